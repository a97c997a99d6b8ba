package store

import (
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestSlotSize: every live entry pays for one Slot, so the size is part of
// the memory budget BENCHMARKS.md states. This fails if a field grows it or
// an 8-byte field brings back 8-byte alignment (and its padding).
func TestSlotSize(t *testing.T) {
	if got := unsafe.Sizeof(Slot{}); got != 24 {
		t.Errorf("Slot is %d bytes, want 24", got)
	}
	if got := unsafe.Alignof(Slot{}); got != 4 {
		t.Errorf("Slot is %d-byte aligned, want 4", got)
	}
}

// TestSlotCtr: the counter, kept in two halves, reads back as written at
// the edges of each half.
func TestSlotCtr(t *testing.T) {
	for _, c := range []uint64{0, 1, 1<<32 - 1, 1 << 32, 1<<32 + 1, 1<<63 + 12345, 1<<64 - 1} {
		var sl Slot
		sl.MakeLive(8)
		sl.SetCtr(c)
		if got := sl.Ctr(); got != c {
			t.Errorf("SetCtr(%#x): Ctr() = %#x", c, got)
		}
		if sl.State() != StateLive || sl.Align() != 8 || sl.Gen() != 0 {
			t.Errorf("SetCtr(%#x) changed meta to %#x", c, sl.meta)
		}
	}
}

// TestSlotArena: every index Arenas hands out reads back whole, and the
// arena index and viewer count, which share a word, do not disturb each
// other.
func TestSlotArena(t *testing.T) {
	var sl Slot
	sl.MakeLive(1)
	sl.SetState(StateViewed)
	for _, i := range []uint32{0, 1, 255, 256, MaxArenas - 1} {
		sl.SetArena(i)
		if !sl.AddViewer() {
			t.Fatal("AddViewer refused the first views")
		}
		if sl.Arena() != i {
			t.Errorf("SetArena(%d): Arena() = %d", i, sl.Arena())
		}
	}
	if sl.Viewers() != 5 {
		t.Errorf("%d viewers, want 5", sl.Viewers())
	}
}

// TestSlotViewerLimit: the 16-bit viewer count refuses a view past
// MaxViewers instead of wrapping to zero, which would let the last
// ReturnView seal an entry under open views.
func TestSlotViewerLimit(t *testing.T) {
	var sl Slot
	sl.MakeLive(1)
	sl.SetState(StateViewed)
	sl.SetArena(MaxArenas - 1)
	for k := range MaxViewers {
		if !sl.AddViewer() {
			t.Fatalf("AddViewer refused view %d of %d", k+1, MaxViewers)
		}
	}
	if sl.AddViewer() {
		t.Fatal("AddViewer took a view past MaxViewers")
	}
	if sl.Viewers() != MaxViewers || sl.Arena() != MaxArenas-1 {
		t.Fatalf("after a refused view: %d viewers in arena %d", sl.Viewers(), sl.Arena())
	}
	sl.DropViewer()
	if !sl.AddViewer() {
		t.Fatal("AddViewer refused a view after one ended")
	}
}

// TestArenasLimit: a set holding MaxArenas arenas maps nothing more and
// returns the owner's Full error; a released index makes room again.
func TestArenasLimit(t *testing.T) {
	full := errors.New("test: full")
	var aux Aux
	var moved, released atomic.Uint64
	maps := 0
	e := &Shard{}
	e.Init(Config{
		Overhead: 16, MinArena: 4096,
		Map: func(n int) (*osmem.Region, error) {
			maps++
			return osmem.Map(n, osmem.Flags{})
		},
		Aux: &aux, Moved: &moved, Released: &released, Full: full,
	})
	a, err := e.Arenas.Map(4096)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, a := range e.Arenas.List() {
			if a != nil {
				_ = osmem.Unmap(a.Reg)
			}
		}
	})
	// Stand-ins for the other arenas: the limit is on indexes, and mapping
	// 65,535 real regions would only make the test slow.
	e.Arenas.list = append(e.Arenas.list, make([]*Arena, MaxArenas-1)...)
	maps = 0
	if _, err := e.Arenas.Map(4096); !errors.Is(err, full) {
		t.Fatalf("Map past MaxArenas: %v, want %v", err, full)
	}
	if _, err := e.NewArena(4096); !errors.Is(err, full) {
		t.Fatalf("NewArena past MaxArenas: %v, want %v", err, full)
	}
	if maps != 0 {
		t.Fatalf("%d regions mapped past the limit", maps)
	}
	reg, err := osmem.Map(4096, osmem.Flags{})
	if err != nil {
		t.Fatal(err)
	}
	aux.Add(reg, 1)
	if _, err := e.Arenas.Adopt(reg); !errors.Is(err, full) {
		t.Fatalf("Adopt past MaxArenas: %v, want %v", err, full)
	}
	aux.Add(reg, -1)
	if err := osmem.Unmap(reg); err != nil {
		t.Fatal(err)
	}

	// Releasing an arena frees its index for the next one.
	if err := e.Arenas.Release(a, nil); err != nil {
		t.Fatal(err)
	}
	b, err := e.Arenas.Map(4096)
	if err != nil {
		t.Fatalf("Map after a release: %v", err)
	}
	if b.Index != a.Index {
		t.Fatalf("new arena at index %d, want the released %d", b.Index, a.Index)
	}
}

// TestArenasLimitDefault: an owner that gives no Full error still gets an
// error, not a wrapped index.
func TestArenasLimitDefault(t *testing.T) {
	e := &Shard{}
	e.Init(Config{Map: func(int) (*osmem.Region, error) { return nil, errors.New("test: mapped") }})
	e.Arenas.list = make([]*Arena, MaxArenas)
	if _, err := e.Arenas.Map(4096); !errors.Is(err, errArenaLimit) {
		t.Fatalf("Map past MaxArenas: %v, want %v", err, errArenaLimit)
	}
}

// TestSlotsTrim: freeing the entries of a table's tail gives its chunks
// back, all but one empty chunk; the lowest free slot is reused first; a
// live slot or a retired one keeps its chunk; and no slot made again in a
// dropped chunk has the index and generation of one handed out before.
func TestSlotsTrim(t *testing.T) {
	var s Slots
	const n = 3*chunkSlots + 10
	for range n {
		s.New()
	}
	mustCheck := func(when string) {
		t.Helper()
		if _, err := s.checkFreeList(); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	// A slot of chunk 0 reused many times: its chunk is never dropped, but
	// one of chunk 2 is, and its generation must carry over.
	hot := uint32(2*chunkSlots + 7)
	for range 100 {
		s.Free(hot, s.At(hot))
		if i, _ := s.New(); i != hot {
			t.Fatalf("reused %d, want %d", i, hot)
		}
	}
	hotGen := s.At(hot).Gen()
	for i := uint32(n - 1); i >= chunkSlots; i-- {
		s.Free(i, s.At(i))
	}
	mustCheck("after freeing the tail")
	if held, dropped := s.Chunks(); held != 2 || dropped != 2 || s.Len() != 2*chunkSlots {
		t.Fatalf("after freeing chunks 1-3: %d chunks held, %d dropped, %d slots; want 2, 2, %d", held, dropped, s.Len(), 2*chunkSlots)
	}
	// Lowest first: a slot of chunk 0 before the empty chunk 1's.
	s.Free(5, s.At(5))
	if i, _ := s.New(); i != 5 {
		t.Fatalf("New gave %d, want the lowest free slot 5", i)
	}
	// Grow again into chunk 2: its slots start past every generation
	// chunk 2 handed out.
	for range 2 * chunkSlots {
		s.New()
	}
	mustCheck("after growing again")
	if g := s.At(hot).Gen(); g < hotGen+1 {
		t.Fatalf("slot %d made again at generation %d, at or below the %d handed out before", hot, g, hotGen)
	}
	// A live slot at the end keeps every chunk before it.
	for i := uint32(0); i < s.Len()-1; i++ {
		s.Free(i, s.At(i))
	}
	mustCheck("with one live slot at the end")
	if held, _ := s.Chunks(); held != 3 {
		t.Fatalf("one live slot in chunk 2: %d chunks held, want 3", held)
	}
	// A retired slot keeps its chunk too: chunk 0 stays, and so does
	// chunk 1 as the one empty chunk after it (without the retired slot,
	// chunk 0 would be that one).
	last := s.Len() - 1
	r := uint32(1)
	s.At(r).meta = 0
	s.nfree-- // r leaves its stack: a retired slot is on none
	f := s.free[0]
	for k, o := range f {
		if uint32(o) == r {
			s.free[0] = append(f[:k], f[k+1:]...)
			break
		}
	}
	s.Free(last, s.At(last))
	mustCheck("after freeing the last live slot")
	if held, _ := s.Chunks(); held != 2 || s.Len() != 2*chunkSlots {
		t.Fatalf("retired slot in chunk 0: %d chunks held, %d slots; want 2 and %d", held, s.Len(), 2*chunkSlots)
	}
}

// TestSlotsModel runs random New and Free calls against a set of live
// slots: the invariants hold after every call, no index and generation is
// handed out twice, the free slot taken is the lowest chunk's, and the
// table holds at most one chunk past its last slot that is not free.
func TestSlotsModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var s Slots
	live := map[uint32]bool{}
	var order []uint32
	issued := map[uint64]bool{}
	for step := range 200000 {
		// Grow and shrink in waves, so chunks are dropped and made again.
		grow := (step/20000)%2 == 0
		if len(order) == 0 || (grow && rng.IntN(10) < 8) || (!grow && rng.IntN(10) < 2) {
			var lowest = -1
			if s.nfree > 0 {
				for c := range s.free {
					if len(s.free[c]) > 0 {
						lowest = c
						break
					}
				}
			}
			i, sl := s.New()
			if lowest >= 0 && int(i>>chunkShift) != lowest {
				t.Fatalf("step %d: New took from chunk %d, lowest with a free slot is %d", step, i>>chunkShift, lowest)
			}
			key := uint64(i)<<32 | uint64(sl.Gen())
			if issued[key] || live[i] {
				t.Fatalf("step %d: slot %d generation %d handed out twice", step, i, sl.Gen())
			}
			issued[key] = true
			sl.MakeLive(8)
			live[i] = true
			order = append(order, i)
		} else {
			k := rng.IntN(len(order))
			i := order[k]
			order[k] = order[len(order)-1]
			order = order[:len(order)-1]
			delete(live, i)
			s.Free(i, s.At(i))
		}
		if step%997 == 0 || len(order) == 0 {
			if _, err := s.checkFreeList(); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			top := -1
			for i := range live {
				top = max(top, int(i>>chunkShift))
			}
			if held, _ := s.Chunks(); held > top+2 {
				t.Fatalf("step %d: %d chunks held, last live slot in chunk %d", step, held, top)
			}
		}
	}
	if _, dropped := s.Chunks(); dropped == 0 {
		t.Fatal("no chunk was dropped: the waves did not shrink the table")
	}
}
