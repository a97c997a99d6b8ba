package memshuffle

import (
	"context"
	"fmt"
	"io"
)

// WriteTo writes the entry's bytes to w straight from the entry, viewed as
// by ViewSlice, in one call to w.Write, and reports how many bytes w took.
// No copy is made on the way: what w does with them (a socket, a pipe to a
// child process, a file; a bufio.Writer keeps a copy in its buffer) is up
// to w, which per the io.Writer contract must not keep the slice. The
// plaintext is there for as long as w.Write takes. The entry
// is encrypted again before WriteTo returns, also when w fails, and also
// when w panics (a typed nil w often does): the error then wraps
// ErrPanicked and the panic value, as ReadFrom's does. A short write without
// an error from w gives io.ErrShortWrite. An entry that is rented (not
// viewed) elsewhere gives ErrBusy, and a nil w ErrNilArgument. The view
// is pinned, as in BorrowView: Close or Purge while w.Write runs never
// faults w's read of the bytes, and WriteTo then returns ErrClosed, joined
// with w's panic if w panicked (as SafePanic, which purges first, does).
func WriteTo(s *Shuffler, h Handle, w io.Writer) (n int64, err error) {
	if w == nil {
		return 0, fmt.Errorf("%w: nil io.Writer", ErrNilArgument)
	}
	b, l, err := lendSlice[byte](context.Background(), failIfBusy, s, h, shared)
	if err != nil {
		return 0, err
	}
	defer func() {
		// What w took from an entry wiped under it is not the entry's.
		err = endedErr(err, s.endPinned(l.h, l.mem, l.kind))
	}()
	var m int
	runSecret(func() { m, err = writeOnce(w, b) })
	if m < 0 || m > len(b) {
		return 0, fmt.Errorf("%w: writer returned %d for a %d-byte write", ErrInvalidCount, m, len(b))
	}
	if err == nil && m < len(b) {
		err = io.ErrShortWrite
	}
	return int64(m), err
}

// writeOnce is w.Write(b) with a panic of w turned into an error: WriteTo
// runs the caller's writer, and no input makes a call panic.
func writeOnce(w io.Writer, b []byte) (m int, err error) {
	defer func() {
		if p := recover(); p != nil {
			m, err = 0, panicError(fmt.Sprintf("io.Writer %T", w), p)
		}
	}()
	return w.Write(b)
}
