package memshuffle

import (
	"errors"
	"fmt"
	"io"

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
	h, err := Alloc[byte](s, n)
	if err != nil {
		return Handle{}, err
	}
	b, err := RentSlice[byte](s, h)
	if err != nil {
		s.Free(h)
		return Handle{}, err
	}
	if _, err := io.ReadFull(r, b); err != nil {
		Wipe(b)
		s.Return(h)
		s.Free(h)
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Handle{}, fmt.Errorf("memshuffle: reading %d bytes: %w", n, err)
	}
	if err := s.Return(h); err != nil {
		return Handle{}, err
	}
	return h, nil
}

// CopyFrom makes an entry holding a copy of src and then wipes src, so the
// entry is the only copy left of what src held. It is the way in for a
// secret that already sits in a []byte; src must not be needed afterwards.
// On error src is wiped all the same.
func CopyFrom(s *Shuffler, src []byte) (Handle, error) {
	defer Wipe(src)
	h, err := Alloc[byte](s, len(src))
	if err != nil {
		return Handle{}, err
	}
	b, err := RentSlice[byte](s, h)
	if err != nil {
		s.Free(h)
		return Handle{}, err
	}
	copy(b, src)
	if err := s.Return(h); err != nil {
		return Handle{}, err
	}
	return h, nil
}
