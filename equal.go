package memshuffle

import (
	"crypto/subtle"
	"fmt"

	"github.com/memshuffle/memshuffle/internal/aesctr"
)

// Equal reports whether the entry holds exactly the bytes of b, comparing
// in constant time: the time taken depends on the lengths, never on where
// the bytes differ. The comparison runs in the signal-guarded assembly
// CopyFrom copies with (amd64 with AES-NI), which leaves none of the bytes
// in a register for a signal arriving meanwhile to save on the signal stack
// (SECURITY.md, "Registers saved in signal frames"); elsewhere it is
// crypto/subtle.ConstantTimeCompare. Sizes are public (see
// Shuffler.Size), so an entry of another size than b is unequal without
// being decrypted. Otherwise the entry is viewed, as by ViewSlice, only for
// the comparison; it fails with ErrBusy while someone rents it. On error
// the result is false.
func Equal(s *Shuffler, h Handle, b []byte) (bool, error) {
	n, err := s.Size(h)
	if err != nil || n != len(b) {
		return false, err
	}
	var eq bool
	err = BorrowViewSlice(s, h, func(p []byte) error {
		eq = aesctr.Equal(p, b)
		return nil
	})
	return eq && err == nil, err
}

// EqualEntries is Equal for two entries of s: whether they hold the same
// bytes, compared in constant time with the same signal-guarded
// comparison, with both viewed only for the comparison. Entries of
// different sizes are unequal and neither is decrypted. Passing the same
// Handle twice is allowed and views it once, so it fails as a view does
// (ErrBusy while rented, ErrTampered).
func EqualEntries(s *Shuffler, a, b Handle) (bool, error) {
	na, err := s.Size(a)
	if err != nil {
		return false, err
	}
	if a == b {
		// Viewed once, not twice: a second View of one entry can fail
		// with ErrBusy behind a waiting writer (see View). Viewed at all,
		// so that a tampered or rented entry fails as it would against
		// another.
		err := BorrowViewSlice(s, a, func([]byte) error { return nil })
		return err == nil, err
	}
	nb, err := s.Size(b)
	if err != nil || na != nb {
		return false, err
	}
	var eq bool
	err = BorrowViewSlice(s, a, func(pa []byte) error {
		return BorrowViewSlice(s, b, func(pb []byte) error {
			eq = aesctr.Equal(pa, pb)
			return nil
		})
	})
	return eq && err == nil, err
}

// errZeroKey is what a call that uses a key answers for a key of zeros:
// almost always a buffer nobody filled (an Alloc'd entry, a zeroed array),
// and a key anyone can compute with. A value, not made at each refusal:
// the Borrow callbacks that find it run inside secret.Do in secret mode.
var errZeroKey = fmt.Errorf("%w: key of zeros", ErrInvalidKey)

// keyIsZero reports whether b holds only zeros, in a time that depends on
// len(b) alone: b is a key, and how far its first non-zero byte is must
// not show.
func keyIsZero(b []byte) bool {
	var acc byte
	for _, c := range b {
		acc |= c
	}
	return subtle.ConstantTimeByteEq(acc, 0) == 1
}
