package memshuffle

import (
	"context"
	"fmt"
	"io"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/osmem"
)

// Wipe overwrites b with zeros. Use it on buffers of your own that held a
// secret: unlike a plain loop, the compiler will not drop it as a dead
// store.
func Wipe(b []byte) { osmem.Wipe(b) }

// ReadFrom makes an entry of n bytes, from 1 to MaxEntrySize
// (ErrInvalidSize, before r is read), and fills it with exactly n bytes read
// from r, straight into the entry while it is rented: the bytes never pass
// through a buffer of memshuffle's on the Go heap. Whether r itself keeps a
// copy (a bufio.Reader's buffer, say) is up to r; an *os.File reads into the
// entry directly. If r yields fewer than n bytes, the entry is wiped and
// freed and the error wraps io.ErrUnexpectedEOF (or r's error). If r panics
// (a typed nil r often does), the entry is wiped and freed as well and the
// error wraps ErrPanicked and the panic value. A count r cannot have read
// (negative, or past the slice it was given) gives ErrInvalidCount, and
// 100 reads in a row that return nothing give io.ErrNoProgress, as in
// ReadAll.
//
// Close or Purge while r is reading never faults: ReadFrom wipes what r
// wrote once r returns, and returns ErrClosed, joined with r's panic if r
// panicked (as SafePanic, which purges first, does).
func ReadFrom(s *Shuffler, r io.Reader, n int) (Handle, error) {
	if r == nil {
		return Handle{}, fmt.Errorf("%w: nil io.Reader", ErrNilArgument)
	}
	return newFilled(s, n, func(b []byte) error { return readFull(r, b) })
}

// readFull fills b from r, turning a panic of r into an error: the entry
// that b is is then wiped and freed like after any other failed read.
func readFull(r io.Reader, b []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicError(fmt.Sprintf("io.Reader %T", r), p)
		}
	}()
	// Not io.ReadFull: it loops for ever on a reader that returns nothing
	// and no error, and takes an impossible count at its word (past
	// len(b), the entry is reported full with bytes r never wrote).
	// readSome refuses both, as ReadAll does.
	for n := 0; n < len(b); {
		m, err := readSome(r, b[n:])
		n += m
		if n == len(b) {
			return nil
		}
		// The reader's error, whose Is may panic: that is its error
		// still, not a panic of the read.
		if is, _ := errorsIs(err, io.EOF); is {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return fmt.Errorf("memshuffle: reading %d bytes: %w", len(b), err)
		}
	}
	return nil
}

// CopyFrom makes an entry holding a copy of src and then wipes src, so the
// entry is the only copy left of what src held. It is the way in for a
// secret that already sits in a []byte; src must not be needed afterwards.
// An empty src fails with ErrInvalidSize, as an entry holds at least one
// byte.
// src is wiped exactly when CopyFrom returns a nil error, once the entry
// holds the copy, encrypted. On any error (ErrClosed, ErrOutOfMemory,
// ErrExpired with a very short WithDefaultTTL, ...) no entry holds it and
// src is left as it was, so the secret is not lost; wipe it yourself if
// you give up on it. Close or Purge during the copy never faults: the copy
// in the entry is wiped, CopyFrom returns ErrClosed, and src is kept.
//
// A src on the caller's stack, as a small array or a make([]byte, n) that
// does not escape often is, is where the runtime copies it to a new stack
// whenever a call grows the stack, freeing the old one as it is, out of
// any wipe's reach. So on amd64, arm64 and 32-bit arm such a src of up
// to 4 KiB is moved out and wiped before anything else, by steps that run
// no stack check: none of that happens before src is zeros, and on an
// error its bytes are put back. A longer one, or one on other
// architectures, is copied from where it is, and a stack that grows
// meanwhile keeps a copy; so does one that grew in the call of CopyFrom
// itself, on a goroutine at the very end of its stack.
//
//go:nosplit
func CopyFrom(s *Shuffler, src []byte) (Handle, error) {
	return copyFrom(s, src, toInbox(src))
}

// copyFrom is CopyFrom with src's bytes in inbox slot i, where toInbox put
// them, or, for -1, still in src.
func copyFrom(s *Shuffler, src []byte, i int) (Handle, error) {
	from := src
	if i >= 0 {
		defer freeInbox(i, len(src))
		from = inboxSlot(i, len(src))
	}
	h, err := newFilled(s, len(from), func(b []byte) error {
		aesctr.Copy(b, from) // leaves no plaintext in a register for a signal to save
		return nil
	})
	switch {
	case err == nil && i < 0:
		Wipe(src)
	case err != nil && i >= 0:
		aesctr.Copy(src, from) // src is left as it was
	}
	return h, err
}

// newFilled makes an entry of n bytes and has fill write it while rented.
// If fill fails, or the entry cannot be sealed, the entry is wiped and
// freed and the error returned as it is. The rent is pinned, so a Close
// meanwhile leaves fill's memory mapped until it ends (see call).
func newFilled(s *Shuffler, n int, fill func([]byte) error) (Handle, error) {
	h, err := Alloc[byte](s, n)
	if err != nil {
		return Handle{}, err
	}
	// A fill that calls runtime.Goexit (t.FailNow does) neither returns nor
	// panics: call ends the borrow, and the entry, whose Handle nobody
	// holds, is freed here as on an error.
	filled := false
	defer func() {
		if !filled {
			s.Free(h)
		}
	}()
	b, l, err := lendSlice[byte](context.Background(), failIfBusy, s, h, exclusive)
	err = call(b, l, err, func(b []byte) error {
		if err := fill(b); err != nil {
			Wipe(b)
			return err
		}
		return nil
	})
	if err != nil {
		return Handle{}, err
	}
	filled = true
	return h, nil
}
