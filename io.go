package memshuffle

import (
	"errors"
	"fmt"
	"io"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/osmem"
)

// Wipe overwrites b with zeros. Use it on buffers of your own that held a
// secret: unlike a plain loop, the compiler will not drop it as a dead
// store.
func Wipe(b []byte) { osmem.Wipe(b) }

// ReadFrom makes an entry of n bytes and fills it with exactly n bytes read
// from r, straight into the entry while it is rented: the bytes never pass
// through a buffer of memshuffle's on the Go heap. Whether r itself keeps a
// copy (a bufio.Reader's buffer, say) is up to r; an *os.File reads into the
// entry directly. If r yields fewer than n bytes, the entry is wiped and
// freed and the error wraps io.ErrUnexpectedEOF (or r's error).
func ReadFrom(s *Shuffler, r io.Reader, n int) (Handle, error) {
	if r == nil {
		return Handle{}, fmt.Errorf("%w: nil io.Reader", ErrNilArgument)
	}
	return newFilled(s, n, func(b []byte) error {
		_, err := io.ReadFull(r, b)
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return fmt.Errorf("memshuffle: reading %d bytes: %w", n, err)
		}
		return nil
	})
}

// CopyFrom makes an entry holding a copy of src and then wipes src, so the
// entry is the only copy left of what src held. It is the way in for a
// secret that already sits in a []byte; src must not be needed afterwards.
// On error src is wiped all the same.
func CopyFrom(s *Shuffler, src []byte) (Handle, error) {
	defer Wipe(src)
	return newFilled(s, len(src), func(b []byte) error {
		aesctr.Copy(b, src) // leaves no plaintext in a register for a signal to save
		return nil
	})
}

// newFilled makes an entry of n bytes and has fill write it while rented.
// If fill fails, or the entry cannot be sealed, the entry is wiped and
// freed and the error returned as it is.
func newFilled(s *Shuffler, n int, fill func([]byte) error) (Handle, error) {
	h, err := Alloc[byte](s, n)
	if err != nil {
		return Handle{}, err
	}
	b, err := RentSlice[byte](s, h)
	if err == nil {
		if err = fill(b); err != nil {
			Wipe(b)
			s.Return(h)
		} else {
			err = s.Return(h)
		}
	}
	if err != nil {
		s.Free(h)
		return Handle{}, err
	}
	return h, nil
}
