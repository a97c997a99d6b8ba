package memscan

import (
	"errors"
	"fmt"
	"io"
	"sort"
)

// readBufSize is the size of the off-heap read buffer: large enough that a
// system call per chunk costs nothing next to hashing it, small enough that
// the copy of foreign memory it holds is modest.
const readBufSize = 1 << 20

// Reads overlap by Len()-1 bytes, so a pattern must leave room for new data.
var _ = [readBufSize - MaxPatternLen - 1]struct{}{}

// A readFunc fills dst with the bytes at addr. It may return fewer bytes
// than asked for without an error; the scanner asks again for the rest.
// After its n bytes it reports why it stopped: errUnreadable when the byte at
// addr+n cannot be read (the scanner skips to the next page), errEnd when
// the range has no more data (the scanner moves on quietly). Any other error
// aborts the scan.
type readFunc func(dst []byte, addr uint64) (int, error)

var (
	errUnreadable = errors.New("memscan: unreadable memory")
	errEnd        = errors.New("memscan: end of data")
)

// chunkScanner streams address ranges through one read buffer.
type chunkScanner struct {
	p        *Pattern
	buf      []byte // off the Go heap in production, see mapBuffer
	pageSize uint64
	read     readFunc
	hit      func(addr uint64)
}

// scanRange reports every match lying wholly inside [start, end), a range the
// caller knows to be contiguous memory.
//
// The buffer holds the last Len()-1 bytes of one read at its front and the
// next read behind them, so a match straddling two reads is seen whole in
// the second; fewer bytes than that cannot hold a match, so nothing is
// reported twice. Whatever a read brought in is wiped as soon as it has been
// scanned and is not needed for the overlap, and the overlap on the way out:
// a copy of the scanned memory never outlives its chunk.
func (s *chunkScanner) scanRange(start, end uint64) error {
	keep := s.p.Len() - 1
	held := 0 // bytes at the front of buf, belonging to [addr-held, addr)
	defer func() { clear(s.buf[:held]) }()

	for addr := start; addr < end; {
		want := min(uint64(len(s.buf)-held), end-addr)
		got, err := s.read(s.buf[held:held+int(want)], addr)
		if got < 0 || uint64(got) > want {
			return fmt.Errorf("memscan: read %d bytes into a %d-byte buffer", got, want)
		}
		if got > 0 {
			win := s.buf[:held+got]
			base := addr - uint64(held)
			s.p.matches(win, func(off int) { s.hit(base + uint64(off)) })
			addr += uint64(got)
			held = min(keep, len(win))
			copy(s.buf, win[len(win)-held:])
			clear(s.buf[held:len(win)])
		}
		switch {
		case err == nil:
			if got == 0 {
				return fmt.Errorf("memscan: reading at %#x: %w", addr, io.ErrNoProgress)
			}
		case errors.Is(err, errUnreadable):
			// Nothing can match across the hole, so the overlap goes too.
			clear(s.buf[:held])
			held = 0
			next := (addr | (s.pageSize - 1)) + 1
			if next <= addr { // the top page of the address space
				return nil
			}
			addr = next
		case errors.Is(err, errEnd):
			return nil
		default:
			return err
		}
	}
	return nil
}

// coalescer turns the populated runs of a block of contiguous mappings,
// given in increasing order, into the ranges to read. Each run is widened by
// Len()-1 bytes on both sides, so a match with even one byte in a populated
// page is read whole, then clipped to the block, merged with the ranges it
// now overlaps, and finally has the skip range (the scanner's own buffer)
// cut out.
type coalescer struct {
	pad     uint64
	lo, hi  uint64 // current block
	skip    span   // zero when nothing is skipped
	pending span
	has     bool
	emit    func(span) error
}

// block starts a new block of contiguous mappings covering [lo, hi).
func (c *coalescer) block(lo, hi uint64) error {
	if err := c.flush(); err != nil {
		return err
	}
	c.lo, c.hi = lo, hi
	return nil
}

// add records the populated run [a, b), which lies inside the block and
// starts no lower than any run added before it in this block.
func (c *coalescer) add(a, b uint64) error {
	if a-c.lo < c.pad {
		a = c.lo
	} else {
		a -= c.pad
	}
	if c.hi-b < c.pad {
		b = c.hi
	} else {
		b += c.pad
	}
	if c.has && a <= c.pending.end {
		c.pending.end = max(c.pending.end, b)
		return nil
	}
	if err := c.flush(); err != nil {
		return err
	}
	c.pending, c.has = span{a, b}, true
	return nil
}

// flush emits the pending range, minus the skip range.
func (c *coalescer) flush() error {
	if !c.has {
		return nil
	}
	c.has = false
	r, k := c.pending, c.skip
	if k.start >= r.end || r.start >= k.end {
		return c.emit(r)
	}
	if r.start < k.start {
		if err := c.emit(span{r.start, k.start}); err != nil {
			return err
		}
	}
	if k.end < r.end {
		return c.emit(span{k.end, r.end})
	}
	return nil
}

// mappingAt returns the mapping of ms, sorted by Start and not overlapping,
// that contains addr.
func mappingAt(ms []Mapping, addr uint64) (Mapping, bool) {
	i := sort.Search(len(ms), func(i int) bool { return ms[i].End > addr })
	if i < len(ms) && ms[i].contains(addr) {
		return ms[i], true
	}
	return Mapping{}, false
}
