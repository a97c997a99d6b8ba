package memscan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
)

// readBufSize is the size of the off-heap read buffer: large enough that a
// system call per chunk costs nothing next to hashing it, small enough that
// the copy of foreign memory it holds is modest.
const readBufSize = 1 << 20

// Reads overlap by the longest pattern's Len()-1 bytes, so a pattern must
// leave room for new data.
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

// A zeroFunc returns how many bytes from addr on are known to read as zeros
// without being read, such as a hole in a sparse core file; 0 when it does
// not know. It may report less than the whole run, never more.
type zeroFunc func(addr uint64) uint64

// chunkScanner streams address ranges through one read buffer and searches
// them for several patterns in the same pass.
type chunkScanner struct {
	ps       []*Pattern
	buf      []byte // off the Go heap in production, see mapBuffer
	pageSize uint64
	read     readFunc
	zeros    zeroFunc // optional
	hit      func(i int, addr uint64)

	runs []zeroRun // scratch for scanWindow: offsets, never contents
}

// overlap returns the number of bytes kept from one read to the next: one
// less than the longest pattern.
func (s *chunkScanner) overlap() int {
	n := 0
	for _, p := range s.ps {
		n = max(n, p.Len())
	}
	return max(n-1, 0)
}

// allNonZero reports whether no pattern is all zeros, so that no pattern
// can match inside a run of zeros.
func (s *chunkScanner) allNonZero() bool {
	for _, p := range s.ps {
		if p.zero {
			return false
		}
	}
	return true
}

// scanRange reports every match lying wholly inside [start, end), a range the
// caller knows to be contiguous memory.
//
// The buffer holds the last overlap() bytes of one read at its front and
// the next read behind them, so a match straddling two reads is seen whole
// in the second. A pattern is only searched where its match would end in
// the new bytes, so nothing is reported twice, not even for a pattern
// shorter than the overlap. Whatever a read brought in is wiped as soon as
// it has been scanned and is not needed for the overlap, and the overlap on
// the way out: a copy of the scanned memory never outlives its chunk.
//
// Bytes the zero function vouches for are not read: the buffer past the
// overlap is kept zeroed, so they are already there. When no pattern is
// all zeros, only the first and last overlap() bytes of such a run are
// searched, since every other window lies wholly in zeros.
func (s *chunkScanner) scanRange(start, end uint64) error {
	keep := s.overlap()
	skipZeros := s.allNonZero()
	held := 0 // bytes at the front of buf, belonging to [addr-held, addr)
	defer func() { clear(s.buf[:held]) }()

	for addr := start; addr < end; {
		want := min(uint64(len(s.buf)-held), end-addr)
		var hole uint64
		if s.zeros != nil {
			hole = min(s.zeros(addr), end-addr)
		}
		var got int
		var err error
		if hole > 0 {
			got = int(min(hole, want))
			clear(s.buf[held : held+got]) // zero already; cheap insurance
		} else {
			got, err = s.read(s.buf[held:held+int(want)], addr)
			if got < 0 || uint64(got) > want {
				return fmt.Errorf("memscan: read %d bytes into a %d-byte buffer", got, want)
			}
		}
		if got > 0 {
			win := s.buf[:held+got]
			base := addr - uint64(held)
			s.scanWindow(win, held, base)
			addr += uint64(got)
			held = min(keep, len(win))
			moveDown(s.buf, win[len(win)-held:])
			clear(s.buf[held:len(win)])
			if skipZeros && hole > uint64(got) && got >= keep {
				// The overlap is now keep zeros from the hole, which
				// stand as well for its last keep bytes as for these:
				// every window between lies wholly in zeros.
				addr += hole - uint64(got)
			}
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

// scanWindow searches win, whose first held bytes were searched with the
// previous read and whose byte 0 is at address base, for every pattern.
//
// Pattern i is searched from offset held-(Len-1) on, where its matches end
// in the new bytes. A pattern with a non-zero byte cannot match a window of
// zeros, so the start offsets whose window lies in a run of zero lines are
// skipped: rehashing after a run costs Len bytes, so only runs of at least
// 2*Len bytes are worth it. Matches beginning or ending in a run are still
// seen, because only starts whose whole window is zero are left out.
func (s *chunkScanner) scanWindow(win []byte, held int, base uint64) {
	var runs []zeroRun
	if !s.allZero() {
		runs = zeroRuns(win, base, s.runs[:0])
		s.runs = runs
	}
	for i, p := range s.ps {
		n := p.Len()
		last := len(win) - n + 1 // one past the last possible start
		pos := max(0, held-(n-1))
		if pos >= last {
			continue
		}
		yield := func(off int) { s.hit(i, base+uint64(off)) }
		if !p.zero {
			for _, r := range runs {
				skipTo := r.end - n + 1
				if r.end-r.start < 2*n || skipTo <= pos {
					continue
				}
				p.matchesAt(win, pos, r.start, yield)
				pos = skipTo
			}
		}
		p.matchesAt(win, pos, last, yield)
	}
}

// allZero reports whether every pattern is all zeros, so that looking for
// runs of zeros is no use.
func (s *chunkScanner) allZero() bool {
	for _, p := range s.ps {
		if !p.zero {
			return false
		}
	}
	return true
}

// zeroRun is a run [start, end) of zero bytes in a window, by offset.
type zeroRun struct{ start, end int }

// Zero detection works on lines and pages aligned on addresses, the way
// memory and core files are laid out: a zero page is compared in one go, the
// other pages line by line.
const (
	zeroLineSize = 64
	zeroPageSize = 4096
)

// zeroRuns appends to runs the maximal runs of whole zero lines of win, whose
// byte 0 is at address base, in increasing order. Zero bytes in partial
// lines at either end, or around a non-zero byte, are not counted: a run is
// a promise that its bytes are zero, not that its neighbours are not.
func zeroRuns(win []byte, base uint64, runs []zeroRun) []zeroRun {
	o := int(-base & (zeroLineSize - 1))
	start := -1 // of the current run, -1 when there is none
	for o+zeroLineSize <= len(win) {
		step := zeroLineSize
		var zero bool
		if (base+uint64(o))&(zeroPageSize-1) == 0 && o+zeroPageSize <= len(win) && isZeroPage(win[o:o+zeroPageSize]) {
			step, zero = zeroPageSize, true
		} else {
			zero = isZeroLine(win[o : o+zeroLineSize])
		}
		switch {
		case zero && start < 0:
			start = o
		case !zero && start >= 0:
			runs = append(runs, zeroRun{start, o})
			start = -1
		}
		o += step
	}
	if start >= 0 {
		runs = append(runs, zeroRun{start, o})
	}
	return runs
}

// moveDown copies src to the front of dst, in the same buffer with src
// starting no lower than dst, eight bytes at a time through general
// registers. The built-in copy would memmove, which on amd64 (its AVX path,
// taken where REP MOVSB is not preferred) loads the last 128 bytes it moves
// into X5-X12 and leaves them there: the end of each window, scanned memory
// in vector registers, where a signal frame on Linux or any system call
// under Wine saves them to memory a later scan reads. Every word is loaded
// before the store that could overwrite it, so the overlap is safe.
func moveDown(dst, src []byte) {
	dst = dst[:len(src)]
	le := binary.LittleEndian
	i := 0
	for ; i+8 <= len(src); i += 8 {
		le.PutUint64(dst[i:], le.Uint64(src[i:]))
	}
	for ; i < len(src); i++ {
		dst[i] = src[i]
	}
}

// isZeroPage reports whether the 4096 bytes of b are all zero. It reads
// memory into general registers only, eight bytes at a time, as isZeroLine
// does: bytes.Equal would load 16 or 32 bytes at a time into vector
// registers and leave the last it compared there, a copy of the scanned
// memory (a secret, when the page holds one) that a signal frame, a
// preemption or a dynamic linker's first binding can later write to a
// stack where a scan finds it.
func isZeroPage(b []byte) bool {
	b = b[:zeroPageSize]
	for o := 0; o < zeroPageSize; o += zeroLineSize {
		if !isZeroLine(b[o : o+zeroLineSize]) {
			return false
		}
	}
	return true
}

// isZeroLine reports whether the 64 bytes of b are all zero.
func isZeroLine(b []byte) bool {
	b = b[:zeroLineSize]
	le := binary.LittleEndian
	return le.Uint64(b[0:])|le.Uint64(b[8:])|le.Uint64(b[16:])|le.Uint64(b[24:])|
		le.Uint64(b[32:])|le.Uint64(b[40:])|le.Uint64(b[48:])|le.Uint64(b[56:]) == 0
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

// padRanges gives a multi-pattern process scan the ranges single-pattern
// scans would read. The coalescer widens populated runs by Len()-1 bytes, so
// patterns of different lengths would read different ranges: the scan reads
// those of the longest pattern, which contain all the others, and keep
// drops a hit of a shorter pattern that lies outside the ranges of its own
// length, such as one wholly in untouched pages just beyond the widening
// its own scan would have done.
type padRanges struct {
	skip   span
	pads   []uint64 // distinct Len()-1 of the patterns, increasing
	ranges [][]span // for each pad, the ranges of the current block
}

func newPadRanges(ps []*Pattern, skip span) *padRanges {
	var pads []uint64
	for _, p := range ps {
		pads = append(pads, uint64(p.Len()-1))
	}
	slices.Sort(pads)
	pads = slices.Compact(pads)
	return &padRanges{skip: skip, pads: pads, ranges: make([][]span, len(pads))}
}

// block sets the populated runs of the next block of contiguous mappings,
// [lo, hi), and returns the ranges to read.
func (r *padRanges) block(lo, hi uint64, runs []span) []span {
	if len(r.pads) == 0 {
		return nil
	}
	for k, pad := range r.pads {
		out := r.ranges[k][:0]
		c := &coalescer{pad: pad, skip: r.skip, emit: func(s span) error {
			out = append(out, s)
			return nil
		}}
		_ = c.block(lo, hi) // emit never fails
		for _, s := range runs {
			_ = c.add(s.start, s.end)
		}
		_ = c.flush()
		r.ranges[k] = out
	}
	return r.ranges[len(r.pads)-1]
}

// keep reports whether a match of n bytes at addr lies inside one range of
// its own length in the current block.
func (r *padRanges) keep(n int, addr uint64) bool {
	k, ok := slices.BinarySearch(r.pads, uint64(n-1))
	if !ok {
		return false
	}
	if k == len(r.pads)-1 {
		return true // these are the ranges read
	}
	rs := r.ranges[k]
	end := addr + uint64(n)
	i := sort.Search(len(rs), func(i int) bool { return rs[i].end > addr })
	return i < len(rs) && rs[i].start <= addr && end <= rs[i].end
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
