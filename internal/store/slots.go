package store

import (
	"fmt"
	"math/bits"
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
// that never move, so a *Slot stays valid while the table grows. Free slot
// indexes are kept on a stack of their own, so the free list costs memory
// only for free slots and no Slot field means one thing while the slot is
// live and another while it is free.
type Slots struct {
	chunks [][]Slot
	n      uint32   // slots in use, free or retired
	free   []uint32 // indexes of free slots, reused last in, first out
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
func (t *Slots) Full() bool { return len(t.free) == 0 && t.n == MaxSlots }

// New takes a free slot, or a new one. Generations start at 1, so no valid
// Handle has generation 0 and the zero Handle never matches.
func (t *Slots) New() (uint32, *Slot) {
	if k := len(t.free); k > 0 {
		i := t.free[k-1]
		t.free = t.free[:k-1]
		return i, t.At(i)
	}
	i := t.n
	if i&(chunkSlots-1) == 0 {
		t.chunks = append(t.chunks, make([]Slot, chunkSlots))
	}
	t.n++
	sl := t.At(i)
	sl.meta = 1 << 8
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
	t.free = append(t.free, i)
}

// Reset empties the table.
func (t *Slots) Reset() { *t = Slots{} }

// checkFreeList verifies that the free stack holds only free slots, once
// each; it returns the slots on it.
func (t *Slots) checkFreeList() (map[uint32]bool, error) {
	if uint64(t.n) > uint64(len(t.chunks))*chunkSlots {
		return nil, fmt.Errorf("%d slots in %d chunks", t.n, len(t.chunks))
	}
	onFree := make(map[uint32]bool, len(t.free))
	for _, i := range t.free {
		if i >= t.n || onFree[i] {
			return nil, fmt.Errorf("free stack holds slot %d twice or past the table's %d", i, t.n)
		}
		onFree[i] = true
		sl := t.At(i)
		if sl.State() != StateFree || sl.Gen() == 0 || sl.viewers != 0 {
			return nil, fmt.Errorf("slot %d on free stack with meta %#x, %d viewers", i, sl.meta, sl.viewers)
		}
	}
	return onFree, nil
}
