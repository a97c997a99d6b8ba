package store

import (
	"fmt"
	"math/bits"
)

// Slot is the metadata of one entry. It holds no secret: where the entry
// is, how big, and which run of counter values encrypted it. Its state,
// generation and alignment are packed into one word that only the methods
// below read and write.
type Slot struct {
	Ctr   uint64 // first counter value of the current encryption
	Off   uint32 // offset in the arena
	Arena uint32 // index of the arena in the shard's Arenas
	Size  uint32 // bytes of data, not counting a tag

	meta    uint32 // generation<<8 | state<<4 | log2(alignment)
	viewers uint32 // StateViewed: how many views are open
	next    uint32 // on the free list: index+1 of the next free slot, 0 at the end
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
func (sl *Slot) Viewers() uint32 { return sl.viewers }

// AddViewer counts one more view of a StateViewed entry.
func (sl *Slot) AddViewer() { sl.viewers++ }

// DropViewer counts one view out.
func (sl *Slot) DropViewer() { sl.viewers-- }

// Slots is a shard's slot table: slot i is the entry a Handle with slot
// index i refers to, while the generations match. Slots live in chunks
// that never move, so a *Slot stays valid while the table grows. Freed
// slots are chained through their own link, not through any field an
// entry uses.
type Slots struct {
	chunks   [][]Slot
	n        uint32 // slots in use or on the free list
	freeHead uint32 // index+1 of the first free slot, 0 when none
}

// At returns slot i, which must be below Len.
func (t *Slots) At(i uint32) *Slot { return &t.chunks[i>>chunkShift][i&(chunkSlots-1)] }

// Len is the number of slots the table holds, free and retired ones
// included: every slot index is below it.
func (t *Slots) Len() uint32 { return t.n }

// Full reports whether New would have to grow the table past MaxSlots.
func (t *Slots) Full() bool { return t.freeHead == 0 && t.n == MaxSlots }

// New takes a free slot, or a new one. Generations start at 1, so no valid
// Handle has generation 0 and the zero Handle never matches.
func (t *Slots) New() (uint32, *Slot) {
	if t.freeHead != 0 {
		i := t.freeHead - 1
		sl := t.At(i)
		t.freeHead = sl.next
		sl.next = 0
		return i, sl
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
	sl.next = t.freeHead
	t.freeHead = i + 1
}

// Reset empties the table.
func (t *Slots) Reset() { *t = Slots{} }

// checkFreeList verifies that the free list holds only free slots, once
// each, and ends; it returns the slots on it.
func (t *Slots) checkFreeList() (map[uint32]bool, error) {
	if uint64(t.n) > uint64(len(t.chunks))*chunkSlots {
		return nil, fmt.Errorf("%d slots in %d chunks", t.n, len(t.chunks))
	}
	onFree := make(map[uint32]bool)
	for f := t.freeHead; f != 0; {
		i := f - 1
		if i >= t.n || onFree[i] {
			return nil, fmt.Errorf("free list broken at %d", i)
		}
		onFree[i] = true
		sl := t.At(i)
		if sl.State() != StateFree || sl.Gen() == 0 || sl.viewers != 0 {
			return nil, fmt.Errorf("slot %d on free list with meta %#x, %d viewers", i, sl.meta, sl.viewers)
		}
		f = sl.next
	}
	return onFree, nil
}
