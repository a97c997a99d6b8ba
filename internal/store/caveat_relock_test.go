package store

import (
	"os"
	"sync/atomic"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// relockSet returns an arena set whose regions are mapped as LockBestEffort
// maps them, on small pages so that their sizes are what the test asks
// for, and unmaps whatever is left at the end.
func relockSet(t *testing.T) *Arenas {
	t.Helper()
	var aux Aux
	var moved, released atomic.Uint64
	e := &Shard{}
	e.Init(Config{
		MinArena: 4096,
		Map: func(n int) (*osmem.Region, error) {
			return osmem.Map(n, osmem.Flags{Lock: true, SmallPages: true})
		},
		Aux: &aux, Moved: &moved, Released: &released,
	})
	t.Cleanup(func() {
		for _, a := range e.Arenas.List() {
			if a != nil {
				_ = osmem.Unmap(a.Reg)
			}
		}
	})
	return &e.Arenas
}

// checkLockCounts compares the set's locked and unlocked counts with what
// its regions say.
func checkLockCounts(t *testing.T, s *Arenas) {
	t.Helper()
	var locked, unlocked int64
	for _, a := range s.List() {
		if a != nil {
			locked += LockedLen(a.Reg)
			unlocked += UnlockedLen(a.Reg)
		}
	}
	if locked != s.Locked() || unlocked != s.Unlocked() {
		t.Fatalf("regions hold %d locked, %d unlocked bytes; the set counts %d, %d", locked, unlocked, s.Locked(), s.Unlocked())
	}
}

// relockScenario maps, in index order, y (locked), x (locked), a big
// arena and a small one, both refused their lock, then releases y. With
// room for the small arena and not the big one, the small one must end up
// locked and the big one not, and the counts exact. unit is the small
// arena's size; refuse makes the system refuse locks while it is on (nil
// where the system's own limit does it).
func relockScenario(t *testing.T, s *Arenas, x, y, unit int, refuse *atomic.Bool) {
	t.Helper()
	mapArena := func(n int) *Arena {
		a, err := s.Map(n)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	ya := mapArena(y)
	mapArena(x)
	if refuse != nil {
		refuse.Store(true)
	}
	big, small := mapArena(2*unit), mapArena(unit)
	if refuse != nil {
		refuse.Store(false)
	}
	if !ya.Reg.Locked || big.Reg.Locked || small.Reg.Locked {
		t.Skipf("locks: first %v, big %v, small %v; the scenario needs the first locked and the others refused", ya.Reg.Locked, big.Reg.Locked, small.Reg.Locked)
	}
	checkLockCounts(t, s)
	if err := s.Release(ya, nil); err != nil {
		t.Fatal(err)
	}
	checkLockCounts(t, s)
	if !small.Reg.Locked {
		t.Errorf("the small arena (%d bytes) stayed unlocked after %d bytes were unlocked, behind a big one (%d bytes) the system refused", len(small.Mem), y, len(big.Mem))
	}
	if big.Reg.Locked {
		t.Errorf("the big arena was locked beyond the room made")
	}
	if want := int64(len(big.Mem)); s.Unlocked() != want {
		t.Errorf("%d bytes counted unlocked, want the big arena's %d", s.Unlocked(), want)
	}
}

// TestRelockPastRefusal: Relock used to stop at the first arena the system
// refused, in index order, so an arena small enough to fit under the
// memory-lock limit stayed unlocked, its entries swappable, whenever a
// larger one came before it. The limit is modelled by the lock fault seam:
// while the room is one unit, a lock of more is refused.
func TestRelockPastRefusal(t *testing.T) {
	unit := 64 * osmem.PageSize()
	var refuse atomic.Bool
	osmem.SetLockFault(func(n int) error {
		if refuse.Load() || n > unit {
			return osmem.ErrInjected
		}
		return nil
	})
	t.Cleanup(func() { osmem.SetLockFault(nil) })
	// x, y and the room y leaves are whatever fits the model: x and y are
	// locked while the hook lets a lock of at most a unit through.
	s := relockSet(t)
	relockScenario(t, s, unit, unit, unit, &refuse)
}

// TestRelockPastRefusalUnderLimit is TestRelockPastRefusal against the
// system's own limit, for a process held to it (an ordinary user; run as
// su nobody -s /bin/bash -c 'ulimit -l 8192; ./store.test -test.run
// RelockPastRefusalUnderLimit').
func TestRelockPastRefusalUnderLimit(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root is not held to the memory-lock limit")
	}
	limit := osmem.LockLimit()
	if limit < 0 {
		t.Skip("no memory-lock limit")
	}
	room := limit - vmLck(t)
	page := int64(osmem.PageSize())
	unit := int(room / 8 / page * page)
	if unit < int(page) {
		t.Skipf("%d bytes of room under the limit is too little", room)
	}
	// Locked: y = unit and x = room - 2 units + a page, leaving a unit
	// less a page, so big (2 units) and small (1 unit) are refused.
	// Releasing y leaves 2 units less a page: small fits, big does not.
	x := int(room) - 2*unit + int(page)
	relockScenario(t, relockSet(t), x, unit, unit, nil)
}

// vmLck is the memory the process has locked, from /proc/self/status, or
// skips the test where that is not available.
func vmLck(t *testing.T) int64 {
	t.Helper()
	n, ok := osmem.VMLocked()
	if !ok {
		t.Skip("no VmLck in /proc/self/status")
	}
	return int64(n)
}
