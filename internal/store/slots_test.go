package store

import (
	"errors"
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
