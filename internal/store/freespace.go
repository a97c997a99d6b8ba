package store

import (
	"fmt"
	"math/bits"
)

// FreeSpace indexes the free extents of a set of arenas, so that space an
// entry released is found again by the next entry that fits in it. Extents
// are kept coalesced: two free extents never touch, so an arena whose
// entries are all gone is one extent, and a run of freed neighbours is one
// extent a larger entry can use.
//
// Lookups are segregated fits (two-level size bins, as in TLSF): an extent
// of the right size is found in constant time, whatever the number of
// extents. Neighbours are found in constant time too, through two hash
// tables of record indexes (extTable) keyed by where extents start and
// end: every Free looks up both sides of what it frees. Go maps in their
// place took most of a Free's time, twice the memory, and kept it after
// the extents were gone. FreeSpace holds only offsets; it never touches
// the memory. It is not safe for concurrent use.
type FreeSpace struct {
	ext    [][]extent // records, in chunks that never move after the first fills; unused ones are chained through next
	nrec   int32      // records made
	spare  int32      // first unused record, or -1
	heads  [numBins]int32
	busy   [numBins / 64]uint64 // bins with at least one extent
	starts extTable             // key(arena, off) -> record
	ends   extTable             // key(arena, off+n) -> record
	bytes  int64
	count  int
}

type extent struct {
	arena, off, n uint32
	prev, next    int32
	bin           uint16
}

// Bins: one per size below 16 bytes, then eight per power of two.
const (
	smallBins = 16
	subBits   = 3
	numBins   = 256
	scanLimit = 8   // extents looked at in a bin before moving up
	skipLimit = 256 // extents looked at in all bins, with an accept function
)

func binOf(n uint32) int {
	if n < smallBins {
		return int(n)
	}
	fl := bits.Len32(n) - 1 // >= 4
	sl := int(n>>(fl-subBits)) & (1<<subBits - 1)
	return smallBins + (fl-4)<<subBits + sl
}

func key(arena, off uint32) uint64 { return uint64(arena)<<32 | uint64(off) }

// Bytes reports the free bytes indexed.
func (f *FreeSpace) Bytes() int64 { return f.bytes }

// Len reports the number of free extents.
func (f *FreeSpace) Len() int { return f.count }

// Insert adds [off, off+n) of arena as free, merging it with the free
// extents it touches, and returns the extent it is now part of.
func (f *FreeSpace) Insert(arena, off, n uint32) (uint32, uint32) {
	if n == 0 {
		return off, 0
	}
	if f.ext == nil {
		f.spare = -1
		for i := range f.heads {
			f.heads[i] = -1
		}
	}
	f.bytes += int64(n)
	if r := f.endingAt(arena, off); r >= 0 {
		e := f.rec(r)
		off, n = e.off, n+e.n
		f.drop(r)
	}
	if r := f.startingAt(arena, off+n); r >= 0 {
		n += f.rec(r).n
		f.drop(r)
	}
	r := f.spare
	if r >= 0 {
		f.spare = f.rec(r).next
	} else {
		// A chunk at a time: growing one slice of every record copied all
		// of them, milliseconds under the shard lock once there were a few
		// hundred thousand. The first chunk grows as a slice does, to at
		// most recChunk records, copied in microseconds: a whole chunk is
		// 96 KiB, and most shards have a few holes or none.
		r = f.nrec
		switch {
		case r < recChunk:
			if len(f.ext) == 0 {
				f.ext = append(f.ext, nil)
			}
			f.ext[0] = append(f.ext[0], extent{})
		case r&recMask == 0:
			f.ext = append(f.ext, make([]extent, recChunk))
		}
		f.nrec++
	}
	*f.rec(r) = extent{arena: arena, off: off, n: n}
	f.link(r)
	f.starts.put(key(arena, off), r)
	f.ends.put(key(arena, off+n), r)
	f.count++
	return off, n
}

// Records are kept in chunks of recChunk.
const (
	recShift = 12
	recChunk = 1 << recShift
	recMask  = recChunk - 1
)

// rec returns record r.
func (f *FreeSpace) rec(r int32) *extent { return &f.ext[r>>recShift][r&recMask] }

// link puts record r into the bin of its size.
func (f *FreeSpace) link(r int32) {
	e := f.rec(r)
	b := binOf(e.n)
	e.bin = uint16(b)
	e.prev, e.next = -1, f.heads[b]
	if e.next >= 0 {
		f.rec(e.next).prev = r
	}
	f.heads[b] = r
	f.busy[b/64] |= 1 << (b % 64)
}

// unlink takes record r out of its bin.
func (f *FreeSpace) unlink(r int32) {
	e := f.rec(r)
	if e.prev >= 0 {
		f.rec(e.prev).next = e.next
	} else {
		f.heads[e.bin] = e.next
		if e.next < 0 {
			f.busy[e.bin/64] &^= 1 << (e.bin % 64)
		}
	}
	if e.next >= 0 {
		f.rec(e.next).prev = e.prev
	}
}

// drop removes record r entirely; the bytes count is the caller's.
func (f *FreeSpace) drop(r int32) {
	f.unlink(r)
	e := f.rec(r)
	f.starts.del(key(e.arena, e.off), r)
	f.ends.del(key(e.arena, e.off+e.n), r)
	e.next = f.spare
	f.spare = r
	f.count--
}

// Take finds n bytes at an offset that is a multiple of align (a power of
// two) and removes them from the index; what is left of the extent they
// came from, before and after, stays free. It reports false when no free
// extent is large enough.
func (f *FreeSpace) Take(n, align uint32) (arena, off uint32, ok bool) {
	return f.TakeWhere(n, align, nil)
}

// TakeWhere is Take from the arenas where accept reports true (all, for a
// nil accept): compaction, emptying an arena, must not move an entry into
// a hole of the same arena, nor of one it will empty next.
func (f *FreeSpace) TakeWhere(n, align uint32, accept func(arena uint32) bool) (arena, off uint32, ok bool) {
	if f.count == 0 || n == 0 {
		return 0, 0, false
	}
	b := binOf(n)
	// Extents accept rules out are passed over, for the compaction that
	// uses it: the extents it skips (of the arena it empties) are often
	// the ones first in their bins. skipLimit bounds them over all bins,
	// not in each: a compaction step calls this for up to compactSlots
	// entries, and with holes only in arenas too empty to accept, a bound
	// per bin let one step look at millions of extents (a Free that ran
	// it took up to 6-10 ms with a million entries freed in random order).
	limit := scanLimit
	if accept != nil {
		limit = skipLimit
	}
	// The extents of n's own bin may be smaller than n: look at a few.
	// k counts the extents looked at in a bin, or with accept in all.
	k := 0
	for r := f.heads[b]; r >= 0 && k < limit; r, k = f.rec(r).next, k+1 {
		if accept != nil && !accept(f.rec(r).arena) {
			continue
		}
		if a, o, ok := f.takeFrom(r, n, align); ok {
			return a, o, true
		}
	}
	// Every extent of a higher bin is larger than n; only the alignment, or
	// accept, can rule one of them out.
	for b++; b < numBins; b++ {
		w := f.busy[b/64] >> (b % 64)
		if w == 0 {
			b |= 63
			continue
		}
		b += bits.TrailingZeros64(w)
		if b >= numBins {
			break
		}
		if accept == nil {
			k = 0
		} else if k >= limit {
			break
		}
		for r := f.heads[b]; r >= 0 && k < limit; r, k = f.rec(r).next, k+1 {
			if accept != nil && !accept(f.rec(r).arena) {
				continue
			}
			if a, o, ok := f.takeFrom(r, n, align); ok {
				return a, o, true
			}
		}
	}
	return 0, 0, false
}

// takeFrom carves n bytes aligned to align out of record r, if they fit.
func (f *FreeSpace) takeFrom(r int32, n, align uint32) (uint32, uint32, bool) {
	e := *f.rec(r)
	at := (e.off + align - 1) &^ (align - 1)
	if at < e.off || uint64(at)+uint64(n) > uint64(e.off)+uint64(e.n) {
		return 0, 0, false
	}
	f.drop(r)
	f.bytes -= int64(e.n)
	if at > e.off {
		f.Insert(e.arena, e.off, at-e.off)
	}
	if tail := e.off + e.n - (at + n); tail > 0 {
		f.Insert(e.arena, at+n, tail)
	}
	return e.arena, at, true
}

// Remove takes the free extent that starts at off in arena out of the
// index and reports its length, or false when no free extent starts there.
func (f *FreeSpace) Remove(arena, off uint32) (uint32, bool) {
	r := f.startingAt(arena, off)
	if r < 0 {
		return 0, false
	}
	n := f.rec(r).n
	f.drop(r)
	f.bytes -= int64(n)
	return n, true
}

// EndingAt reports the start of the free extent that ends at end in arena.
func (f *FreeSpace) EndingAt(arena, end uint32) (uint32, bool) {
	r := f.endingAt(arena, end)
	if r < 0 {
		return 0, false
	}
	return f.rec(r).off, true
}

// startingAt returns the record of the free extent that starts at off in
// arena, or -1. The table knows the hash of a key, not the key: the record
// tells.
func (f *FreeSpace) startingAt(arena, off uint32) int32 {
	k := key(arena, off)
	for i := 0; ; i++ {
		r := f.starts.get(k, i)
		if r < 0 {
			return -1
		}
		if e := f.rec(r); e.arena == arena && e.off == off {
			return r
		}
	}
}

// endingAt returns the record of the free extent that ends at end in
// arena, or -1.
func (f *FreeSpace) endingAt(arena, end uint32) int32 {
	k := key(arena, end)
	for i := 0; ; i++ {
		r := f.ends.get(k, i)
		if r < 0 {
			return -1
		}
		if e := f.rec(r); e.arena == arena && e.off+e.n == end {
			return r
		}
	}
}

// Each calls fn for every free extent, in no particular order.
func (f *FreeSpace) Each(fn func(arena, off, n uint32)) {
	if f.ext == nil {
		return
	}
	for b := range f.heads {
		for r := f.heads[b]; r >= 0; r = f.rec(r).next {
			e := f.rec(r)
			fn(e.arena, e.off, e.n)
		}
	}
}

// Check verifies the index against itself: every extent in the bin of its
// size and found in both tables, no two extents touching, and the totals
// right.
func (f *FreeSpace) Check() error {
	for _, t := range []*extTable{&f.starts, &f.ends} {
		if err := t.check(); err != nil {
			return err
		}
	}
	if f.ext == nil {
		if f.count != 0 || f.bytes != 0 {
			return fmt.Errorf("store: empty index counts %d extents, %d bytes", f.count, f.bytes)
		}
		return nil
	}
	count, bytes := 0, int64(0)
	for b := range f.heads {
		prev := int32(-1)
		for r := f.heads[b]; r >= 0; r = f.rec(r).next {
			e := f.rec(r)
			if e.prev != prev || int(e.bin) != b || binOf(e.n) != b || e.n == 0 {
				return fmt.Errorf("store: extent %d (arena %d, [%d,+%d)) misfiled in bin %d", r, e.arena, e.off, e.n, b)
			}
			if f.startingAt(e.arena, e.off) != r || f.endingAt(e.arena, e.off+e.n) != r {
				return fmt.Errorf("store: extent %d (arena %d, [%d,+%d)) missing from the tables", r, e.arena, e.off, e.n)
			}
			if f.endingAt(e.arena, e.off) >= 0 {
				return fmt.Errorf("store: extent at arena %d offset %d touches the one before it", e.arena, e.off)
			}
			count++
			bytes += int64(e.n)
			prev = r
			if count > int(f.nrec) {
				return fmt.Errorf("store: bin %d has a cycle", b)
			}
		}
		if (f.heads[b] >= 0) != (f.busy[b/64]&(1<<(b%64)) != 0) {
			return fmt.Errorf("store: bin %d occupancy bit wrong", b)
		}
	}
	if count != f.count || bytes != f.bytes || f.starts.Len() != count || f.ends.Len() != count {
		return fmt.Errorf("store: %d extents of %d bytes, counted %d of %d, tables %d/%d",
			count, bytes, f.count, f.bytes, f.starts.Len(), f.ends.Len())
	}
	return nil
}
