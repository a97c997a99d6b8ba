package store

import (
	"fmt"
	"math/bits"
)

// extTable maps uint64 keys to int32 values for FreeSpace, which finds the
// free extents that start or end at an offset through two of them. Two Go
// maps did it before: they held 75 bytes per extent at a million extents,
// kept all of it when the extents went away, and took most of a Free's
// time.
//
// The table is open addressing with linear probing, on slots of 8 bytes
// that keep a value and the first 33 bits of its key's hash, not the key:
// the caller holds the key in the record the value names, and get returns
// the values whose hash begins as the key's does, of which the first is
// nearly always the one (another key would need the same 33 bits).
// Deletion shifts the slots after a hole back (no tombstones), so a
// lookup that misses stops at the first empty slot, and a slot's place is
// told by the hash bits it keeps.
//
// Slots are in segments of at most segSlots, found through a directory
// indexed by the first bits of the hash (extendible hashing), so that the
// table grows and shrinks a segment at a time, under the shard lock: a
// split or a merge rehashes at most two segments, never every key at
// once. A segment splits in two when 3/4 full and merges with its buddy
// when the two together would fill less than 3/8 of one; the directory
// halves when no segment needs it whole, and a table of a few keys is one
// segment of a few slots again.
type extTable struct {
	dir   []*extSeg // indexed by the first depth bits of a hash
	depth uint8
	deep  int // segments of the directory's depth, with one entry each: when none is left the directory halves
	n     int
}

// extSeg is one segment: the keys whose hashes begin with the same depth
// bits.
type extSeg struct {
	slots []uint64 // hash&hashKept | value+1; 0 is empty
	depth uint8
	shift uint8 // 64 - log2(len(slots))
	n     int
	full  int // n at which it grows: 3/4 of the slots
	low   int // n under which it may shrink, 0 if it cannot
}

const (
	segBits   = 10
	segSlots  = 1 << segBits // 8 KiB: a split or a merge rehashes at most 2 of them
	minSlots  = 8
	valBits   = 31 // values are record indexes, below 1<<31 - 1
	valMask   = 1<<valBits - 1
	hashKept  = ^uint64(valMask)
	maxDepth  = 64 - valBits - segBits // a slot's place in its segment comes from the bits it keeps
	fibonacci = 0x9E3779B97F4A7C15     // 2^64 / golden ratio: keys in arithmetic progression spread over the first bits
)

func hashKey(k uint64) uint64 { return k * fibonacci }

// seg returns the segment of hash h: the entry of its first depth bits,
// shifted in two so that no shift is by 64 or more (that is, so that
// depth 0 needs no test).
func (t *extTable) seg(h uint64) *extSeg { return t.dir[h>>1>>((63-t.depth)&63)] }

// home returns the slot where a probe for slot value x starts.
func (s *extSeg) home(x uint64) int { return homeOf(x, s.depth, s.shift) }

func homeOf(x uint64, depth, shift uint8) int {
	return int((x & hashKept) << (depth & 63) >> (shift & 63))
}

// Len reports the number of values stored.
func (t *extTable) Len() int { return t.n }

// get returns the value of the nth (from 0) slot whose key's hash begins
// as k's does, or -1 when there are no more.
func (t *extTable) get(k uint64, nth int) int32 {
	if t.n == 0 {
		return -1
	}
	h := hashKey(k)
	s := t.seg(h)
	slots, want := s.slots, h&hashKept
	mask := len(slots) - 1
	for i := homeOf(h, s.depth, s.shift); ; i = (i + 1) & mask {
		x := slots[i]
		if x == 0 {
			return -1
		}
		if x&hashKept == want {
			if nth == 0 {
				return int32(x&valMask) - 1
			}
			nth--
		}
	}
}

// put stores v, in [0, 1<<31 - 1), under k. A key can be stored more than
// once: a value is told from another by the caller.
func (t *extTable) put(k uint64, v int32) {
	if t.dir == nil {
		t.dir, t.deep = []*extSeg{newSeg(0, minSlots)}, 1
	}
	h := hashKey(k)
	s := t.seg(h)
	if s.n >= s.full {
		s = t.grow(s, h)
	}
	s.add(h&hashKept | uint64(v) + 1)
	t.n++
}

// del removes value v stored under k and reports whether it was there.
func (t *extTable) del(k uint64, v int32) bool {
	if t.n == 0 {
		return false
	}
	h := hashKey(k)
	s := t.seg(h)
	slots, depth, shift := s.slots, s.depth, s.shift
	want, mask := h&hashKept|uint64(v)+1, len(slots)-1
	i := homeOf(want, depth, shift)
	for x := slots[i]; x != want; x = slots[i] {
		if x == 0 {
			return false
		}
		i = (i + 1) & mask
	}
	// Move back every slot after the hole that may be there: one whose
	// probe starts at or before the hole.
	for j := i; ; {
		j = (j + 1) & mask
		x := slots[j]
		if x == 0 {
			break
		}
		if (j-homeOf(x, depth, shift))&mask >= (j-i)&mask {
			slots[i] = x
			i = j
		}
	}
	slots[i] = 0
	s.n--
	t.n--
	if s.n < s.low {
		t.shrink(s, h)
	}
	return true
}

func newSeg(depth uint8, size int) *extSeg {
	s := &extSeg{slots: make([]uint64, size), depth: depth, shift: uint8(64 - bits.TrailingZeros(uint(size))), full: size * 3 / 4}
	switch {
	case depth > 0:
		s.low = segSlots * 3 / 8 // its buddy and it may hold less than that
	case size > minSlots:
		s.low = size / 4
	}
	return s
}

// add puts slot value x into the first empty slot from its home.
func (s *extSeg) add(x uint64) {
	mask := len(s.slots) - 1
	i := s.home(x)
	for s.slots[i] != 0 {
		i = (i + 1) & mask
	}
	s.slots[i] = x
	s.n++
}

// rehash moves s to size slots.
func (s *extSeg) rehash(size int) {
	old := s.slots
	*s = *newSeg(s.depth, size)
	for _, x := range old {
		if x != 0 {
			s.add(x)
		}
	}
}

// grow makes room for one more slot in s, of hash h, and returns the
// segment h is in afterwards.
func (t *extTable) grow(s *extSeg, h uint64) *extSeg {
	switch {
	case len(s.slots) < segSlots: // the only segment, of a small table
		s.rehash(2 * len(s.slots))
	case s.depth < maxDepth:
		t.split(s, h)
	case s.n+2 > len(s.slots):
		// A lookup that misses needs an empty slot to stop at. Only
		// segSlots keys whose hashes share their first maxDepth+segBits
		// bits fill a segment that cannot split, and FreeSpace's keys
		// never come near: the table would hold billions.
		panic(fmt.Sprintf("store: %d keys share the first %d bits of their hashes", s.n+1, maxDepth))
	}
	return t.seg(h)
}

// split replaces segment s, of hash h, by two, one for each value of the
// next bit of their hashes.
func (t *extTable) split(s *extSeg, h uint64) {
	if s.depth == t.depth {
		dir := make([]*extSeg, 2*len(t.dir))
		for i, d := range t.dir {
			dir[2*i], dir[2*i+1] = d, d
		}
		t.dir, t.depth, t.deep = dir, t.depth+1, 0
	}
	lo, hi := newSeg(s.depth+1, segSlots), newSeg(s.depth+1, segSlots)
	for _, x := range s.slots {
		switch {
		case x == 0:
		case x<<s.depth>>63 == 0:
			lo.add(x)
		default:
			hi.add(x)
		}
	}
	span := 1 << (t.depth - s.depth)
	first := int(h>>(64-s.depth)) << (t.depth - s.depth)
	for i := range span / 2 {
		t.dir[first+i], t.dir[first+span/2+i] = lo, hi
	}
	if lo.depth == t.depth {
		t.deep += 2
	}
}

// shrink gives memory back after a deletion from s, of hash h. A segment
// merges with its buddy (the one whose hashes differ from its own in their
// last bit only) when the two would fill less than 3/8 of one, and the
// merged one with its own buddy, and so on; the last one halves while it
// is less than 1/4 full. Each step keeps: no two buddies hold less than
// 3/8 of a segment between them, and the only segment is at least 1/4
// full, or small. So a table that held a million keys and holds ten is one
// segment of 32 slots again.
func (t *extTable) shrink(s *extSeg, h uint64) {
	for s.depth > 0 {
		span := t.depth - s.depth
		b := t.dir[(int(h>>(64-s.depth))^1)<<span]
		if b.depth != s.depth || (s.n+b.n)*8 >= segSlots*3 {
			return
		}
		m := newSeg(s.depth-1, segSlots)
		for _, seg := range [2]*extSeg{s, b} {
			for _, x := range seg.slots {
				if x != 0 {
					m.add(x)
				}
			}
		}
		first := int(h>>(64-m.depth)) << (span + 1)
		for i := range 1 << (span + 1) {
			t.dir[first+i] = m
		}
		if s.depth == t.depth {
			t.deep -= 2
			for t.deep == 0 && t.depth > 0 {
				t.halve()
			}
		}
		s = m
	}
	size := len(s.slots)
	for size > minSlots && s.n*4 < size {
		size /= 2
	}
	if size != len(s.slots) {
		s.rehash(size)
	}
}

// halve halves the directory, which no segment needs whole.
func (t *extTable) halve() {
	dir := make([]*extSeg, len(t.dir)/2)
	for i := range dir {
		dir[i] = t.dir[2*i]
	}
	t.dir, t.depth, t.deep = dir, t.depth-1, 0
	for _, d := range t.dir {
		if d.depth == t.depth {
			t.deep++
		}
	}
}

// slotCount reports the slots the table holds, empty or not.
func (t *extTable) slotCount() int {
	n := 0
	t.eachSeg(func(s *extSeg) { n += len(s.slots) })
	return n
}

// eachSeg calls fn once for every segment.
func (t *extTable) eachSeg(fn func(*extSeg)) {
	for i := 0; i < len(t.dir); {
		s := t.dir[i]
		fn(s)
		i += 1 << (t.depth - s.depth)
	}
}

// check verifies the table against itself: the directory, every slot
// found from its home without crossing an empty slot, in the segment of
// its hash, and the counts.
func (t *extTable) check() error {
	if t.dir == nil {
		if t.n != 0 {
			return fmt.Errorf("store: table without slots counts %d", t.n)
		}
		return nil
	}
	if len(t.dir) != 1<<t.depth {
		return fmt.Errorf("store: directory of depth %d has %d entries", t.depth, len(t.dir))
	}
	n, deep := 0, 0
	for i := 0; i < len(t.dir); {
		s := t.dir[i]
		if s.depth > t.depth || i&(1<<(t.depth-s.depth)-1) != 0 {
			return fmt.Errorf("store: directory entry %d holds a segment of depth %d (directory %d)", i, s.depth, t.depth)
		}
		span := 1 << (t.depth - s.depth)
		for j := i; j < i+span; j++ {
			if t.dir[j] != s {
				return fmt.Errorf("store: directory entries %d and %d differ in a segment of depth %d", i, j, s.depth)
			}
		}
		if s.depth == t.depth {
			deep++
		}
		size := len(s.slots)
		if size < minSlots || size&(size-1) != 0 || size > segSlots || s.depth > 0 && size != segSlots || int(s.shift) != 64-bits.TrailingZeros(uint(size)) {
			return fmt.Errorf("store: segment of depth %d has %d slots, shift %d", s.depth, size, s.shift)
		}
		used := 0
		for j, x := range s.slots {
			if x == 0 {
				continue
			}
			used++
			if s.depth > 0 && int(x>>(64-s.depth))<<(t.depth-s.depth) != i {
				return fmt.Errorf("store: slot %d of directory entry %d holds a hash of another segment", j, i)
			}
			for k := s.home(x); k != j; k = (k + 1) & (size - 1) {
				if s.slots[k] == 0 {
					return fmt.Errorf("store: slot %d of directory entry %d is past an empty slot from its home %d", j, i, s.home(x))
				}
			}
		}
		if used != s.n || used >= size {
			return fmt.Errorf("store: segment of directory entry %d counts %d of %d slots, holds %d", i, s.n, size, used)
		}
		if s.depth > 0 {
			b := t.dir[i^span]
			if b.depth == s.depth && (s.n+b.n)*8 < segSlots*3 {
				return fmt.Errorf("store: segments of directory entries %d and %d hold %d and %d values, not merged", i, i^span, s.n, b.n)
			}
		} else if size > minSlots && s.n*4 < size {
			return fmt.Errorf("store: the only segment holds %d values in %d slots", s.n, size)
		}
		n += used
		i += span
	}
	if n != t.n || deep != t.deep {
		return fmt.Errorf("store: table counts %d values and %d deepest segments, holds %d and %d", t.n, t.deep, n, deep)
	}
	return nil
}
