package memshuffle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/memshuffle/memshuffle/internal/aesctr"
)

// readStart is the size of the first entry ReadAll and ReadUntil read
// into: a key, a password or a token fits. Larger input grows through
// doubling entries, whose cost is dominated by the last ones, so a small
// start costs large input little and saves small input the encryption of
// bytes it never fills.
const readStart = 64

// maxEmptyReads is how many reads in a row may return nothing and no error
// before the reader is taken to be stuck, as bufio does.
const maxEmptyReads = 100

// ReadAll makes an entry holding everything r yields until io.EOF, for
// input of unknown length: a key file, standard input, a pipe. The bytes go
// straight from r into rented entries; when one fills, a larger one is
// made, the bytes are copied across outside the Go heap, and the old one is
// wiped and freed, so no copy of the input is left behind but the result,
// whose size is exactly the input's length. A reader that tells its length
// (a Len method, as bytes.Reader has) and a regular *os.File are read into
// an entry of that length at once, and a read of one byte more into an
// entry of its own finds the end: input of the length told, from 64
// bytes up to limit, is not copied, so it needs room for itself once, as
// ReadFrom does. Whether r keeps a copy of its own (a bufio.Reader's
// buffer) is up to r.
//
// limit, from 1 to MaxEntrySize, caps the input: one more byte gives
// ErrTooLarge (r has then been read limit+1 bytes far). Input that ends at
// once gives an error matching both ErrInvalidSize and io.EOF, since an
// entry holds at least one byte. On any error from r, other than io.EOF,
// and if r panics, the error is returned (a panic as an error) and
// everything read is wiped and freed: a short read is never a secret of the
// wrong length. A reader that returns nothing, and no error, 100 times in a
// row gives io.ErrNoProgress, and one that reports an impossible count
// ErrInvalidCount, with the same wiping. The entry being read into is
// rented, pinned as in Borrow, for as long as r takes: Close or Purge
// while ReadAll waits on r never faults r's write; what r wrote is wiped
// once it returns, and ReadAll returns ErrClosed, joined with r's panic
// if r panicked.
func ReadAll(s *Shuffler, r io.Reader, limit int) (Handle, error) {
	hint := sizeHint(r)
	return readInto(s, r, limit, hint, func(g *growing) (int, error) {
		n := 0
		read := func(p []byte) (int, error) { return readSome(r, p) }
		for {
			if n == len(g.b) && n == hint && n < limit {
				full, held, err := g.pastForetold(n, limit, read)
				n = held
				if full || err != nil {
					return n, err
				}
			}
			if n == len(g.b) {
				full, err := g.makeRoom(n, limit, read, "more than %d bytes")
				if full || err != nil {
					return n, err
				}
			}
			m, err := readSome(r, g.b[n:])
			n += m
			if err == io.EOF {
				return n, nil
			}
			if err != nil {
				return 0, readError(err)
			}
		}
	})
}

// ReadUntil makes an entry holding what r yields up to the first delim, or
// up to io.EOF if no delim comes; delim itself is consumed but not kept.
// Nothing after delim is read: when r is an io.ByteReader it is read with
// ReadByte, otherwise with one-byte Reads straight into the entry, one call
// to r per byte. That is slow on an *os.File (a system call per byte) but
// leaves the rest of, say, standard input for the next reader; a
// bufio.Reader is faster, at the cost of a copy in its heap buffer.
// Entries grow, and limit and errors work, as for ReadAll: more than limit
// bytes before delim gives ErrTooLarge; delim first gives ErrInvalidSize
// (an entry holds at least one byte), and end of input first gives an error
// matching ErrInvalidSize and io.EOF; a reader that makes no progress
// gives io.ErrNoProgress.
func ReadUntil(s *Shuffler, r io.Reader, delim byte, limit int) (Handle, error) {
	br, _ := r.(io.ByteReader)
	return readInto(s, r, limit, -1, func(g *growing) (int, error) {
		n := 0
		for {
			if n == len(g.b) {
				full, err := g.makeRoom(n, limit, func(p []byte) (int, error) {
					m, err := readByte(r, br, p)
					if m == 1 && p[0] == delim {
						return 0, io.EOF
					}
					return m, err
				}, "no delimiter in the first %d bytes")
				if full || err != nil {
					return n, err
				}
			}
			m, err := readByte(r, br, g.b[n:n+1])
			if m == 1 {
				if g.b[n] == delim {
					g.b[n] = 0
					if n == 0 {
						return 0, fmt.Errorf("%w: nothing before the delimiter", ErrInvalidSize)
					}
					return n, nil
				}
				n++
			}
			if err == io.EOF {
				return n, nil
			}
			if err != nil {
				return 0, readError(err)
			}
		}
	})
}

// sizeHint guesses how many bytes r has left, or returns -1. Readers over
// memory (bytes.Reader, strings.Reader, bytes.Buffer) tell with Len, and a
// regular file by its size less its offset. A wrong guess costs time, and,
// for a guess too large, memory up to the caller's limit while r is read:
// the entries grow or shrink to what r really yields. A Len that panics (a
// typed nil *bytes.Reader's does) gives no guess: the panic is r's to
// report, which its Read does, as an error, inside readInto.
func sizeHint(r io.Reader) (n int) {
	defer func() {
		if recover() != nil {
			n = -1
		}
	}()
	switch r := r.(type) {
	case interface{ Len() int }:
		return r.Len()
	case *os.File:
		fi, err := r.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return -1
		}
		off, err := r.Seek(0, io.SeekCurrent)
		if err != nil || off > fi.Size() {
			return -1
		}
		return int(min(fi.Size()-off, MaxEntrySize))
	}
	return -1
}

// readInto runs fill, which reads into g and returns how many bytes it
// read, and turns what it read into an entry of exactly that size. Whatever
// goes wrong, a panic in r included, every entry fill used is wiped and
// freed.
func readInto(s *Shuffler, r io.Reader, limit, hint int, fill func(*growing) (int, error)) (h Handle, err error) {
	if r == nil {
		return Handle{}, fmt.Errorf("%w: nil io.Reader", ErrNilArgument)
	}
	if limit < 1 || limit > MaxEntrySize {
		return Handle{}, fmt.Errorf("%w: limit %d", ErrInvalidSize, limit)
	}
	g := &growing{s: s}
	// Input of the size foretold fills the first entry, and ReadAll's
	// probe finds its end (see pastForetold): no second entry to copy it
	// into, which at the memory-lock limit needed room for the input
	// twice.
	start := readStart
	if hint >= limit {
		start = limit
	} else if hint >= readStart {
		start = hint
	}
	if err := g.grow(0, min(start, limit)); err != nil {
		return Handle{}, err
	}
	// read says whether fill returned: a reader that calls runtime.Goexit
	// (t.FailNow does) neither returns nor panics, and its entry, rented
	// and holding what it wrote in the clear, must go as on an error.
	read := false
	defer func() {
		if p := recover(); p != nil {
			err = panicError("reader", p)
		}
		if err != nil || !read {
			// After Close or Purge ErrClosed wins, as in ReadFrom: the
			// reader's own error or an empty input (a reader that only
			// found the end) would hide that the Shuffler went. A panic
			// stays beside it.
			if derr := g.discard(); derr != nil {
				if errors.Is(derr, ErrClosed) && isPanicked(err) {
					err = errors.Join(derr, err)
				} else {
					err = derr
				}
			}
			h = Handle{}
		}
	}()
	// r writes plaintext, and its stack and registers may keep some.
	var n int
	runSecret(func() { n, err = fill(g) })
	if err == nil && n == 0 {
		err = fmt.Errorf("%w: empty input: %w", ErrInvalidSize, io.EOF)
	}
	if err == nil {
		// Set after finish too: a logger's handler may end the goroutine
		// in it (see grow).
		h, err = g.finish(n)
	}
	read = true
	return h, err
}

// growing is the rented entry ReadAll and ReadUntil read into, and the one
// byte entry they probe for more input with.
type growing struct {
	s  *Shuffler
	h  Handle
	b  []byte // h, rented
	ph Handle // the probe entry, while one exists
	pb []byte
}

// grow moves the first n bytes read into a new rented entry of size bytes
// and wipes and frees the old one.
//
// Every call it makes may hand events to a logger whose handler ends the
// goroutine with runtime.Goexit (t.FailNow does): at each such point g
// names exactly the entries still to end, so that discard ends each one
// once. An entry ended twice would drop its shard's pin count below the
// borrows still running, and Close would unmap memory under one.
func (g *growing) grow(n, size int) error {
	h, b, err := rentNew(g.s, size)
	if err != nil {
		return err
	}
	aesctr.Copy(b, g.b[:n]) // as in CopyFrom
	oh, ob := g.h, g.b
	// On error the new entry goes with the rest (see readInto).
	g.h, g.b = h, b
	return releaseEntry(g.s, oh, ob)
}

// rentNew makes a byte entry and rents it, pinned: the reader writes into
// it, so Close must leave it mapped until it is given back with endPinned.
func rentNew(s *Shuffler, size int) (Handle, []byte, error) {
	h, err := Alloc[byte](s, size)
	if err != nil {
		return Handle{}, nil, err
	}
	lent := false
	defer func() {
		if !lent { // an error, or a logger's Goexit in lendSlice (see grow)
			s.Free(h)
		}
	}()
	b, _, err := lendSlice[byte](context.Background(), failIfBusy, s, h, exclusive)
	if err != nil {
		return Handle{}, nil, err
	}
	lent = true
	return h, b, nil
}

// release wipes and frees the entry read into, if any. It returns
// ErrClosed when Close or Purge reached the entry's shard while it was
// rented: they wipe one shard at a time, so what grow copied out of it may
// be the wiped bytes, while the shard of the new entry is still open.
func (g *growing) release() error {
	h, b := g.h, g.b
	g.h, g.b = Handle{}, nil // before the calls that may end the goroutine (see grow)
	return releaseEntry(g.s, h, b)
}

// releaseEntry wipes and frees the rented entry h, whose bytes are b, if b
// is not nil: release's work, and releaseProbe's.
func releaseEntry(s *Shuffler, h Handle, b []byte) error {
	if b == nil {
		return nil
	}
	Wipe(b)
	// Deferred, so that it runs however endPinned ends (see grow). Free
	// takes an entry that expired while rented as well as a live one.
	defer s.Free(h)
	// Any other error of endPinned matters not: the entry is wiped.
	if err := s.endPinned(h, b, exclusive); errors.Is(err, ErrClosed) {
		return err
	}
	return nil
}

// makeRoom is called when the n bytes read so far fill the entry. Below
// limit it grows the entry. At limit only the end of the input may follow:
// it reads one byte more with read, into an entry of its own, and reports
// full when there was none, or ErrTooLarge (tooLarge formats limit) when
// there was one.
func (g *growing) makeRoom(n, limit int, read func([]byte) (int, error), tooLarge string) (full bool, err error) {
	if n < limit {
		return false, g.grow(n, grownSize(n, limit))
	}
	more, err := g.probe(read)
	if err != nil {
		return false, err
	}
	if more {
		return false, fmt.Errorf("%w: "+tooLarge, ErrTooLarge, limit)
	}
	return true, nil
}

// pastForetold is makeRoom for an entry that holds the n bytes, below
// limit, that the reader foretold: it reads one byte more with read, into
// an entry of its own, and reports full when there was none. When there
// was one, it grows the entry as makeRoom would and puts the byte in it.
// It returns the bytes the entry holds.
func (g *growing) pastForetold(n, limit int, read func([]byte) (int, error)) (full bool, held int, err error) {
	defer g.releaseProbe()
	m, rerr, err := g.readProbe(read)
	if err != nil {
		return false, n, err
	}
	if m == 0 {
		if rerr == io.EOF {
			return true, n, nil
		}
		return false, n, readError(rerr)
	}
	if err := g.grow(n, grownSize(n, limit)); err != nil {
		return false, n, err
	}
	aesctr.Copy(g.b[n:n+1], g.pb) // as in grow
	// The byte is kept, unlike probe's: if Close or Purge reached the
	// probe's shard, it may be the wiped byte, while the entry's shard is
	// still open (as in release).
	if err := g.releaseProbe(); err != nil {
		return false, n + 1, err
	}
	switch {
	case rerr == io.EOF:
		return true, n + 1, nil
	case rerr != nil:
		return false, n + 1, readError(rerr)
	}
	return false, n + 1, nil
}

// grownSize is the size an entry of n bytes, below limit, grows to:
// twice n, at most limit. Twice n overflows a 32-bit int past 1 GiB, where
// MaxEntrySize allows limits up to 2 GiB.
func grownSize(n, limit int) int { return n + min(n, limit-n) }

// probe reads one more byte, into an entry of its own, with read, and
// reports whether there was one. io.EOF from read means there was not; its
// other errors come back as reading errors.
func (g *growing) probe(read func([]byte) (int, error)) (bool, error) {
	// An ErrClosed of the probe's shard is left to the entry read into,
	// whose shard Close or Purge reaches too.
	defer g.releaseProbe()
	m, rerr, err := g.readProbe(read)
	switch {
	case err != nil:
		return false, err
	case m == 1:
		return true, nil
	case rerr == io.EOF:
		return false, nil
	}
	return false, readError(rerr)
}

// readProbe reads one byte more with read into an entry of its own, g.pb,
// which the caller releases (releaseProbe), and returns what read
// returned, or err when the entry could not be made.
func (g *growing) readProbe(read func([]byte) (int, error)) (m int, rerr, err error) {
	h, b, err := rentNew(g.s, 1)
	if err != nil {
		return 0, nil, err
	}
	g.ph, g.pb = h, b
	m, rerr = read(b)
	return m, rerr, nil
}

// releaseProbe wipes and frees the probe entry, if any, and returns
// ErrClosed, as release does, when Close or Purge reached its shard.
func (g *growing) releaseProbe() error {
	h, b := g.ph, g.pb
	g.ph, g.pb = Handle{}, nil // as in release
	return releaseEntry(g.s, h, b)
}

// discard wipes and frees everything read. It returns ErrClosed when Close
// or Purge reached the shard of an entry read into meanwhile.
func (g *growing) discard() error {
	perr := g.releaseProbe()
	if err := g.release(); err != nil {
		return err
	}
	return perr
}

// finish returns an entry of exactly n bytes holding what was read,
// encrypted, copying it into a smaller entry if the last one is not full.
func (g *growing) finish(n int) (Handle, error) {
	if n < len(g.b) {
		if err := g.grow(n, n); err != nil {
			return Handle{}, err
		}
	}
	h, b := g.h, g.b
	g.h, g.b = Handle{}, nil
	done := false
	defer func() {
		if !done { // an error, or a logger's Goexit in endPinned (see grow)
			g.s.Free(h)
		}
	}()
	// After Close or Purge, endPinned wipes b, which holds what the reader
	// wrote since, and reports ErrClosed.
	if err := g.s.endPinned(h, b, exclusive); err != nil {
		return Handle{}, err
	}
	done = true
	return h, nil
}

// readError says where an error from the reader came from.
func readError(err error) error { return fmt.Errorf("memshuffle: reading: %w", err) }

// readSome is one r.Read into p that makes progress: it retries reads that
// return nothing, up to maxEmptyReads, and refuses counts a correct reader
// cannot return, which would otherwise index past the entry.
func readSome(r io.Reader, p []byte) (int, error) {
	for range maxEmptyReads {
		m, err := r.Read(p)
		if m < 0 || m > len(p) {
			return 0, fmt.Errorf("%w: reader returned %d for a %d-byte read", ErrInvalidCount, m, len(p))
		}
		if m > 0 || err != nil {
			return m, err
		}
	}
	return 0, io.ErrNoProgress
}

// readByte reads one byte into p[0], with ReadByte when br is not nil.
// The byte passes through a register, not a buffer of its own.
func readByte(r io.Reader, br io.ByteReader, p []byte) (int, error) {
	if br == nil {
		return readSome(r, p[:1])
	}
	c, err := br.ReadByte()
	if err != nil {
		return 0, err
	}
	p[0] = c
	return 1, nil
}
