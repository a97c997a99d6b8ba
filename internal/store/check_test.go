package store

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// testShard returns an engine over unlocked memory with n entries of 40
// bytes filled with non-zero bytes, as ciphertext would be, and their
// slot indexes.
func testShard(t *testing.T, n int) (*Shard, []uint32) {
	t.Helper()
	var aux Aux
	var moved, released atomic.Uint64
	e := &Shard{}
	e.Init(Config{
		Overhead: 16, MinArena: 4096,
		Map: func(n int) (*osmem.Region, error) { return osmem.Map(n, osmem.Flags{}) },
		Aux: &aux, Moved: &moved, Released: &released,
	})
	t.Cleanup(func() {
		for _, a := range e.Arenas.List() {
			if a != nil {
				_ = osmem.Unmap(a.Reg)
			}
		}
	})
	var idx []uint32
	for k := range n {
		a, off, err := e.PlaceNew(40+e.Overhead(), 8)
		if err != nil {
			t.Fatal(err)
		}
		i, sl := e.Slots.New()
		sl.SetCtr(uint64(k) * 8)
		sl.SetArena(a.Index)
		sl.Off, sl.Size = uint32(off), 40
		sl.MakeLive(8)
		e.Admit(sl, a)
		for j := range e.Extent(sl) {
			e.Extent(sl)[j] = byte(k + 1)
		}
		idx = append(idx, i)
	}
	if err := e.Check(); err != nil {
		t.Fatalf("before planting: %v", err)
	}
	return e, idx
}

// TestCheckFindsCorruption plants one fault of each kind the engine's
// checker looks for (the root package plants those it can reach from
// there) and expects it reported: a checker that finds nothing proves
// nothing.
func TestCheckFindsCorruption(t *testing.T) {
	cases := []struct {
		name  string
		plant func(e *Shard, live, freed uint32)
		want  string
	}{
		{"locked count", func(e *Shard, _, _ uint32) { e.Arenas.locked++ }, "locked"},
		{"dumpable count", func(e *Shard, _, _ uint32) { e.Arenas.dumpable-- }, "dumpable"},
		{"writer count", func(e *Shard, _, _ uint32) { e.Waiters.writers = map[uint64]int32{7: 0} }, "writer count"},
		{"closed wake channel", func(e *Shard, _, _ uint32) { close(e.Waiters.Chan(7)) }, "wake channel"},
		{"live slot on the free stack", func(e *Shard, live, _ uint32) { e.Slots.pushFree(live) }, "on free stack"},
		{"free slot twice on the stack", func(e *Shard, _, freed uint32) { e.Slots.pushFree(freed) }, "twice"},
		{"free slot off the stack", func(e *Shard, _, _ uint32) {
			e.Slots.free[0], e.Slots.has[0], e.Slots.nfree = nil, 0, 0
		}, "not on the free list"},
		{"free stack past the table", func(e *Shard, _, _ uint32) { e.Slots.pushFree(e.Slots.n) }, "past the table"},
		{"free count", func(e *Shard, _, _ uint32) { e.Slots.nfree++ }, "counted"},
		{"bitmap without free slots", func(e *Shard, _, _ uint32) { e.Slots.has[0] |= 2 }, "bitmap"},
		{"free slots without bitmap", func(e *Shard, _, _ uint32) { e.Slots.has[0] = 0 }, "bitmap"},
		{"free slots below the lowest word", func(e *Shard, _, _ uint32) { e.Slots.low = 1 }, "lowest word"},
		{"slot below its chunk's floor", func(e *Shard, _, _ uint32) { e.Slots.floors = []uint32{1 << 20} }, "floor"},
		{"viewed by nobody", func(e *Shard, live, _ uint32) {
			e.Slots.At(live).SetState(StateViewed)
			e.Counts.AddViewed(1)
		}, "viewers"},
		{"count", func(e *Shard, _, _ uint32) { e.Counts.AddRented(1) }, "counted"},
		{"deadlines out of order", func(e *Shard, live, _ uint32) {
			e.Expiries.Set(live, 1<<62)
			e.Expiries.Set(live+1, 1<<61)
			e.Expiries.at(0).at = 1<<63 - 1
		}, "earlier than its parent"},
		{"deadline held for a live entry", func(e *Shard, live, _ uint32) {
			e.Expiries.held = map[uint32]int64{live: 1}
		}, "not borrowed"},
		{"arena indexes past a slot's", func(e *Shard, _, _ uint32) {
			e.Arenas.holes = nil
			e.Arenas.list = append(e.Arenas.list, make([]*Arena, MaxArenas)...)
		}, "more than a slot holds"},
		{"current arena out of the set", func(e *Shard, _, _ uint32) { e.Arenas.cur = &Arena{Index: 9} }, "current arena"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, idx := testShard(t, 8)
			freed := idx[3]
			sl := e.Slots.At(freed)
			e.Drop(sl, nil)
			e.Slots.Free(freed, sl)
			if err := e.Check(); err != nil {
				t.Fatalf("after a free: %v", err)
			}
			c.plant(e, idx[5], freed)
			err := e.Check()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("check after %s: %v, want an error about %q", c.name, err, c.want)
			}
		})
	}
}

// TestSlotsFreeList: freed slots are reused last in, first out, with their
// generation bumped, and a slot whose generation would wrap is retired.
func TestSlotsFreeList(t *testing.T) {
	var s Slots
	a, sa := s.New()
	b, _ := s.New()
	if a != 0 || b != 1 || sa.Gen() != 1 {
		t.Fatalf("new slots %d %d, gen %d", a, b, sa.Gen())
	}
	s.Free(a, s.At(a))
	s.Free(b, s.At(b))
	if i, sl := s.New(); i != b || sl.Gen() != 2 || s.nfree != 1 {
		t.Fatalf("reused %d gen %d with %d left free, want %d gen 2 with 1", i, sl.Gen(), s.nfree, b)
	}
	s.At(a).meta = genMask << 8
	// a is on the free list still; take it and free it at the last
	// generation.
	if i, _ := s.New(); i != a {
		t.Fatalf("reused %d, want %d", i, a)
	}
	s.Free(a, s.At(a))
	if i, _ := s.New(); i != 2 || s.Len() != 3 {
		t.Fatalf("after retiring slot %d: New gave %d of %d", a, i, s.Len())
	}
}

// pushFree puts slot i on its chunk's free stack, as Free would, without
// clearing it: for planting faults.
func (t *Slots) pushFree(i uint32) {
	c := int(i >> chunkShift)
	for c >= len(t.free) {
		t.free = append(t.free, nil)
	}
	t.free[c] = append(t.free[c], uint16(i&(chunkSlots-1)))
	t.has[c>>6] |= 1 << (c & 63)
	t.nfree++
}
