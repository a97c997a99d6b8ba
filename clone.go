package memshuffle

import (
	"errors"
	"fmt"

	"github.com/memshuffle/memshuffle/internal/aesctr"
)

// Clone makes a new entry holding a copy of h's bytes and returns its
// Handle. The copy goes from the viewed entry straight into the new rented
// one, both outside the Go heap, and the new entry is encrypted under
// counter values of its own, so the two ciphertexts share nothing. The new
// entry is a byte entry of h's size, so it has h's alignment (see
// EntryAlign) and any type h was rented as fits it too. It gets the
// Shuffler's default TTL, if any, rather than h's expiry, and is
// independent of h from then on; it is made once h is decrypted, so its
// TTL runs from then, and only a TTL shorter than the copying itself
// fails Clone with ErrExpired for a live h (the error says it is the
// copy's). h must not be rented elsewhere (ErrBusy); on error no new entry
// is left.
func Clone(s *Shuffler, h Handle) (Handle, error) {
	var c Handle
	done := false
	defer func() {
		// On error, and when a logger's handler ends the goroutine with
		// runtime.Goexit at a hand-over of events (t.FailNow does), the
		// copy goes: nobody would ever get its Handle.
		if !done && c != (Handle{}) {
			s.Free(c)
		}
	}()
	err := BorrowViewSlice(s, h, func(src []byte) error {
		var err error
		if c, err = Alloc[byte](s, len(src)); err != nil {
			return err
		}
		err = BorrowSlice(s, c, func(dst []byte) error {
			aesctr.Copy(dst, src) // leaves no plaintext in a register for a signal to save
			return nil
		})
		if errors.Is(err, ErrExpired) {
			err = fmt.Errorf("%w: the copy, whose default TTL ran out while it was filled", err)
		}
		return err
	})
	if err != nil {
		return Handle{}, err
	}
	done = true
	return c, nil
}
