package memshuffle

import "github.com/memshuffle/memshuffle/internal/aesctr"

// Clone makes a new entry holding a copy of h's bytes and returns its
// Handle. The copy goes from the viewed entry straight into the new rented
// one, both outside the Go heap, and the new entry is encrypted under
// counter values of its own, so the two ciphertexts share nothing. The new
// entry is a byte entry of h's size, so it has h's alignment (see
// EntryAlign) and any type h was rented as fits it too. It gets the
// Shuffler's default TTL, if any, rather than h's expiry, and is
// independent of h from then on. h must not be rented elsewhere (ErrBusy);
// on error no new entry is left.
func Clone(s *Shuffler, h Handle) (Handle, error) {
	n, err := s.Size(h)
	if err != nil {
		return Handle{}, err
	}
	c, err := Alloc[byte](s, n)
	if err != nil {
		return Handle{}, err
	}
	err = BorrowViewSlice(s, h, func(src []byte) error {
		return BorrowSlice(s, c, func(dst []byte) error {
			aesctr.Copy(dst, src) // leaves no plaintext in a register for a signal to save
			return nil
		})
	})
	if err != nil {
		s.Free(c)
		return Handle{}, err
	}
	return c, nil
}
