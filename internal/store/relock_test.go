package store

import (
	"sync/atomic"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// lockShard returns an engine whose arenas are mapped as LockBestEffort
// maps them, or without a lock when lock is false, and a switch that makes
// the system refuse every mlock while it is on.
func lockShard(t *testing.T, lock bool) (*Shard, *atomic.Bool) {
	t.Helper()
	var refuse atomic.Bool
	osmem.SetFault(func(o osmem.Op) error {
		if o == osmem.OpLock && refuse.Load() {
			return osmem.ErrInjected
		}
		return nil
	})
	t.Cleanup(func() { osmem.SetFault(nil) })
	var aux Aux
	var moved, released atomic.Uint64
	e := &Shard{}
	e.Init(Config{
		Overhead: 0, MinArena: 4096,
		Map: func(n int) (*osmem.Region, error) { return osmem.Map(n, osmem.Flags{Lock: lock}) },
		Aux: &aux, Moved: &moved, Released: &released,
	})
	t.Cleanup(func() {
		for _, a := range e.Arenas.List() {
			if a != nil {
				_ = osmem.Unmap(a.Reg)
			}
		}
	})
	return e, &refuse
}

// add places an entry of n bytes, non-zero as ciphertext is, and returns
// its slot index.
func add(t *testing.T, e *Shard, n int) uint32 {
	t.Helper()
	a, off, err := e.PlaceNew(n, 8)
	if err != nil {
		t.Fatal(err)
	}
	i, sl := e.Slots.New()
	sl.SetArena(a.Index)
	sl.Off, sl.Size = uint32(off), uint32(n)
	sl.MakeLive(8)
	e.Admit(sl, a)
	for j := range e.Extent(sl) {
		e.Extent(sl)[j] = 0xa5
	}
	return i
}

// TestReleaseRelocks: an arena the system would not lock when it was
// mapped, at a peak, is locked once an arena that was locked is released
// and so gives back room under the limit. It used to stay unlocked, its
// entries swappable, until the next Shuffle, and forever for a program
// that does not shuffle (as user nobody with ulimit -l 8192: 12 MB
// allocated, 9 MB freed, and the 3 MB left stayed in 3 MiB of unlocked
// arenas with 266 KiB locked). Arenas mapped without a lock stay so.
func TestReleaseRelocks(t *testing.T) {
	if lim := osmem.BindingLockLimit(); lim >= 0 && lim < 64<<10 {
		// The relock needs room for the arenas it locks, besides the refusal the test injects.
		t.Skipf("RLIMIT_MEMLOCK %d is too small for the arenas locked", lim)
	}
	for _, lock := range []bool{true, false} {
		e, refuse := lockShard(t, lock)
		var first []uint32
		for range 64 { // fills the first 4 KiB arena
			first = append(first, add(t, e, 64))
		}
		refuse.Store(true)
		for range 64 { // the next arena, refused its lock
			add(t, e, 64)
		}
		refuse.Store(false)
		if e.Arenas.Unlocked() == 0 {
			t.Fatal("no arena left unlocked")
		}
		for _, i := range first {
			sl := e.Slots.At(i)
			e.Drop(sl, nil)
			e.Slots.Free(i, sl)
		}
		if err := e.Check(); err != nil {
			t.Fatal(err)
		}
		switch got := e.Arenas.Unlocked(); {
		case lock && got != 0:
			t.Fatalf("%d bytes still unlocked after a locked arena was released", got)
		case !lock && (got != e.Arenas.Mapped() || e.Arenas.Locked() != 0):
			t.Fatalf("without a lock: %d of %d bytes unlocked, %d locked", got, e.Arenas.Mapped(), e.Arenas.Locked())
		}
	}
}
