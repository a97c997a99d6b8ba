package store

import (
	"fmt"
	"math/bits"
	"unsafe"
)

// Slot is the metadata of one entry. It holds no secret: where the entry
// is, how big, and which run of counter values encrypted it. Its state,
// generation and alignment are packed into one word that only the methods
// below read and write.
//
// Every live entry pays for a Slot, so it holds only what a live entry
// uses: 24 bytes, in 4-byte words (the counter is two halves, so the
// struct needs no 8-byte alignment and no padding). What only free or
// viewed slots need lives elsewhere: free slot indexes in the table's own
// stack, and a viewer count narrow enough to share a word with the arena
// index. TestSlotSize fails if the struct grows.
type Slot struct {
	ctr  [2]uint32 // first counter value of the current encryption: low, high half
	Off  uint32    // offset in the arena
	Size uint32    // bytes of data, not counting a tag
	meta uint32    // generation<<8 | state<<4 | log2(alignment)

	arena   uint16 // index of the arena in the shard's Arenas, below MaxArenas
	viewers uint16 // StateViewed: how many views are open, at most MaxViewers
}

// Slot states.
const (
	StateFree    = 0
	StateLive    = 1
	StateRented  = 2 // rented by one borrower, exclusively
	StateViewed  = 3 // viewed by Viewers() readers
	StateExpired = 4 // wiped at its expiry; the handle answers ErrExpired until freed
)

// GenBits is how many bits of a generation a Handle carries: a slot whose
// generation would pass 1<<GenBits - 1 is retired, never reused.
const GenBits = 24

// MaxSlots is the most slots a table holds: slot indexes are 32 bits.
const MaxSlots = 1<<32 - 1

// MaxViewers is the most views of one entry open at once: the count is 16
// bits, and AddViewer refuses one more rather than wrap to zero, which
// would let the entry be sealed under open views.
const MaxViewers = 1<<16 - 1

const (
	genMask    = 1<<GenBits - 1
	chunkShift = 12
	chunkSlots = 1 << chunkShift
)

// Gen is the slot's generation, which Handles to it carry.
func (sl *Slot) Gen() uint32 { return sl.meta >> 8 }

// State is one of the State constants.
func (sl *Slot) State() uint32 { return sl.meta >> 4 & 0xf }

// Align is the entry's alignment in bytes.
func (sl *Slot) Align() int { return 1 << (sl.meta & 0x7) }

// AlignLog is log2 of Align.
func (sl *Slot) AlignLog() uint8 { return uint8(sl.meta & 0x7) }

// Ctr is the first counter value of the entry's current encryption.
func (sl *Slot) Ctr() uint64 { return uint64(sl.ctr[1])<<32 | uint64(sl.ctr[0]) }

// SetCtr records the first counter value of a new encryption.
func (sl *Slot) SetCtr(c uint64) { sl.ctr = [2]uint32{uint32(c), uint32(c >> 32)} }

// Arena is the index of the entry's arena in the shard's Arenas.
func (sl *Slot) Arena() uint32 { return uint32(sl.arena) }

// SetArena records the entry's arena. Arenas never hands out an index of
// MaxArenas or more, so the index fits.
func (sl *Slot) SetArena(i uint32) { sl.arena = uint16(i) }

// SetState moves the slot to state st. A slot has viewers only while it is
// StateViewed, so any change of state starts the count again from zero.
func (sl *Slot) SetState(st uint32) {
	sl.meta = sl.meta&^0xf0 | st<<4
	sl.viewers = 0
}

// MakeLive makes a slot just taken from the table hold a live entry
// aligned to align, a power of two.
func (sl *Slot) MakeLive(align int) {
	sl.meta = sl.meta&^0xff | StateLive<<4 | uint32(bits.TrailingZeros(uint(align)))
	sl.viewers = 0
}

// Viewers is how many views of a StateViewed entry are open.
func (sl *Slot) Viewers() uint32 { return uint32(sl.viewers) }

// AddViewer counts one more view of a StateViewed entry. It reports false,
// and counts nothing, when MaxViewers views are already open.
func (sl *Slot) AddViewer() bool {
	if sl.viewers == MaxViewers {
		return false
	}
	sl.viewers++
	return true
}

// DropViewer counts one view out.
func (sl *Slot) DropViewer() { sl.viewers-- }

// Slots is a shard's slot table: slot i is the entry a Handle with slot
// index i refers to, while the generations match. Slots live in chunks
// that never move, so a *Slot stays valid while the table grows.
//
// Free slots are kept on a stack per chunk, and New takes one from the
// lowest chunk that has any: entries made after a peak gather at the
// start of the table, so the chunks past them empty, and an empty chunk
// at the end goes back to the Go heap (see trim). A Handle names its slot,
// so a slot index cannot move while its entry lives: only the table's
// tail can shrink, and a chunk made again starts its slots past every
// generation the dropped one handed out, so an old Handle never matches
// a new entry.
type Slots struct {
	chunks  [][]Slot
	free    [][]uint16 // free[c]: chunk c's free slots, by offset in the chunk, reused last in, first out
	has     []uint64   // bit c set: free[c] is not empty
	low     int        // no word of has below this one has a bit set
	floors  []uint32   // floors[c]: the generation chunk c's slots start at, if it is made again
	top     []uint32   // top[c]: the highest generation a slot of chunk c has reached
	n       uint32     // slots in use, free or retired
	nfree   int        // free slots, over every chunk
	dropped int        // chunks given back so far, for tests and Stats
}

// At returns slot i, which must be below Len. Every chunk holds
// chunkSlots slots: seen as an array, its index needs no bounds check.
func (t *Slots) At(i uint32) *Slot {
	return &(*[chunkSlots]Slot)(t.chunks[i>>chunkShift])[i&(chunkSlots-1)]
}

// Len is the number of slots the table holds, free and retired ones
// included: every slot index is below it.
func (t *Slots) Len() uint32 { return t.n }

// Full reports whether New would have to grow the table past MaxSlots.
func (t *Slots) Full() bool { return t.nfree == 0 && t.n == MaxSlots }

// New takes a free slot, from the lowest chunk that has one, or a new one
// at the end. Generations start at 1, so no valid Handle has generation 0
// and the zero Handle never matches.
func (t *Slots) New() (uint32, *Slot) {
	if t.nfree > 0 {
		for t.has[t.low] == 0 {
			t.low++
		}
		c := t.low<<6 | bits.TrailingZeros64(t.has[t.low])
		f := t.free[c]
		k := len(f) - 1
		i := uint32(c)<<chunkShift | uint32(f[k])
		t.free[c] = f[:k]
		if k == 0 {
			t.has[c>>6] &^= 1 << (c & 63)
		}
		t.nfree--
		return i, t.At(i)
	}
	i := t.n
	c := int(i >> chunkShift)
	if i&(chunkSlots-1) == 0 {
		t.chunks = append(t.chunks, make([]Slot, chunkSlots))
		t.free = append(t.free, nil)
		t.top = append(t.top, 0)
		if c>>6 >= len(t.has) {
			t.has = append(t.has, 0)
		}
	}
	t.n++
	sl := t.At(i)
	g := uint32(1)
	if c < len(t.floors) {
		g = max(g, t.floors[c])
	}
	sl.meta = g << 8
	t.top[c] = max(t.top[c], g)
	return i, sl
}

// Free clears slot i and bumps its generation so old Handles go stale. A
// slot whose generation would wrap is retired instead of reused, which
// keeps Handles unique for the table's life.
func (t *Slots) Free(i uint32, sl *Slot) {
	g := sl.Gen() + 1
	*sl = Slot{meta: g << 8}
	if g > genMask {
		sl.meta = 0
		return
	}
	c := int(i >> chunkShift)
	t.top[c] = max(t.top[c], g)
	t.free[c] = append(t.free[c], uint16(i&(chunkSlots-1)))
	t.has[c>>6] |= 1 << (c & 63)
	t.low = min(t.low, c>>6)
	t.nfree++
	if c+2 >= len(t.chunks) {
		t.trim()
	}
}

// trim gives the last chunk back while both it and the chunk before it
// hold only free slots: one empty chunk stays at the end, so a table whose
// size hovers at a chunk's edge does not make and drop one on every Alloc
// and Free. A chunk with a retired slot never empties, so it stays. The
// floor of a chunk given back is the highest generation its slots reached,
// kept as they go (top), not found by reading them: the Free that emptied
// the tail of a table of a million slots read 255 chunks of them under
// the shard lock, 2 ms.
func (t *Slots) trim() {
	for k := len(t.chunks); k >= 2 && t.empty(k-1) && t.empty(k-2); k-- {
		c := k - 1
		floor := max(1, t.top[c])
		if c >= len(t.floors) {
			t.floors = append(t.floors, make([]uint32, c+1-len(t.floors))...)
		}
		t.floors[c] = floor
		t.nfree -= len(t.free[c])
		t.has[c>>6] &^= 1 << (c & 63)
		t.chunks[c], t.free[c] = nil, nil
		t.chunks, t.free, t.top = t.chunks[:c], t.free[:c], t.top[:c]
		t.n = uint32(c) << chunkShift
		t.dropped++
	}
}

// empty reports whether every slot of chunk c that has been made is free.
func (t *Slots) empty(c int) bool {
	return uint32(len(t.free[c])) == min(t.n-uint32(c)<<chunkShift, chunkSlots)
}

// Chunks reports how many chunks the table holds and how many it has given
// back.
func (t *Slots) Chunks() (held, dropped int) { return len(t.chunks), t.dropped }

// Reset empties the table.
func (t *Slots) Reset() { *t = Slots{} }

// checkFreeList verifies the free stacks: each holds only free slots of its
// chunk, once each, the bitmap and the count agree with them, no two empty
// chunks end the table, and every slot of a chunk made again is at or past
// the generation it was made again at. It returns the free slots.
func (t *Slots) checkFreeList() (map[uint32]bool, error) {
	if uint64(t.n) > uint64(len(t.chunks))*chunkSlots || uint64(t.n)+chunkSlots <= uint64(len(t.chunks))*chunkSlots {
		return nil, fmt.Errorf("%d slots in %d chunks", t.n, len(t.chunks))
	}
	if len(t.free) != len(t.chunks) || len(t.has)*64 < len(t.chunks) {
		return nil, fmt.Errorf("%d free stacks and %d bitmap words for %d chunks", len(t.free), len(t.has), len(t.chunks))
	}
	onFree := make(map[uint32]bool, t.nfree)
	for c, f := range t.free {
		if (len(f) > 0) != (t.has[c>>6]>>(c&63)&1 == 1) {
			return nil, fmt.Errorf("chunk %d: %d free slots, bitmap bit %d", c, len(f), t.has[c>>6]>>(c&63)&1)
		}
		if len(f) > 0 && c>>6 < t.low {
			return nil, fmt.Errorf("chunk %d has free slots below the lowest word %d", c, t.low)
		}
		for _, o := range f {
			i := uint32(c)<<chunkShift | uint32(o)
			if i >= t.n || onFree[i] {
				return nil, fmt.Errorf("free stack holds slot %d twice or past the table's %d", i, t.n)
			}
			onFree[i] = true
			sl := t.At(i)
			if sl.State() != StateFree || sl.Gen() == 0 || sl.viewers != 0 {
				return nil, fmt.Errorf("slot %d on free stack with meta %#x, %d viewers", i, sl.meta, sl.viewers)
			}
		}
	}
	for c := len(t.chunks); c < len(t.has)*64; c++ {
		if t.has[c>>6]>>(c&63)&1 != 0 {
			return nil, fmt.Errorf("bitmap marks chunk %d, past the table's %d", c, len(t.chunks))
		}
	}
	if len(onFree) != t.nfree {
		return nil, fmt.Errorf("%d free slots on the stacks, %d counted", len(onFree), t.nfree)
	}
	if k := len(t.chunks); k >= 2 && t.empty(k-1) && t.empty(k-2) {
		return nil, fmt.Errorf("the table's last two chunks are empty: not trimmed")
	}
	if len(t.top) != len(t.chunks) {
		return nil, fmt.Errorf("%d highest generations kept for %d chunks", len(t.top), len(t.chunks))
	}
	for c := range t.chunks {
		for j := range t.chunks[c][:min(t.n-uint32(c)<<chunkShift, chunkSlots)] {
			if g := t.chunks[c][j].Gen(); g > t.top[c] {
				return nil, fmt.Errorf("slot %d has generation %d, past its chunk's highest %d", c<<chunkShift|j, g, t.top[c])
			}
		}
	}
	for c := range min(len(t.floors), len(t.chunks)) {
		for j := range t.chunks[c][:min(t.n-uint32(c)<<chunkShift, chunkSlots)] {
			if sl := &t.chunks[c][j]; sl.meta != 0 && sl.Gen() < t.floors[c] {
				return nil, fmt.Errorf("slot %d has generation %d, below its chunk's floor %d", c<<chunkShift|j, sl.Gen(), t.floors[c])
			}
		}
	}
	return onFree, nil
}

// Bytes is the Go heap the table holds: its chunks of slots, the free
// stacks' arrays and the bitmap.
func (t *Slots) Bytes() int64 {
	n := int64(len(t.chunks))*chunkSlots*int64(unsafe.Sizeof(Slot{})) + int64(len(t.has))*8 + int64(len(t.floors)+len(t.top))*4
	for _, f := range t.free {
		n += int64(cap(f)) * 2
	}
	return n
}
