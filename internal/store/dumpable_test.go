package store

import (
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestReleaseKeepsDumpableCount: the dumpable bytes counted are those of
// the arenas whose regions are not excluded from core dumps, before and
// after each release. Release read the region's DontDump after unmapping
// it, and osmem.Unmap on Windows drops the exclusion (and clears DontDump)
// as it unmaps: every arena excluded from dumps, released at once, took
// its size off a count it was never in, and DumpableBytes went negative.
func TestReleaseKeepsDumpableCount(t *testing.T) {
	s := relockSet(t)
	check := func(when string) {
		t.Helper()
		var want int64
		for _, a := range s.List() {
			if a != nil && !a.Reg.DontDump {
				want += int64(len(a.Mem))
			}
		}
		if got := s.Dumpable(); got != want {
			t.Fatalf("%s: %d bytes counted dumpable, the arenas hold %d", when, got, want)
		}
	}
	var as []*Arena
	for _, n := range []int{osmem.PageSize(), 5 * osmem.PageSize()} {
		a, err := s.Map(n)
		if err != nil {
			t.Fatal(err)
		}
		as = append(as, a)
	}
	check("mapped")
	for _, a := range as {
		if err := s.Release(a, nil); err != nil {
			t.Fatal(err)
		}
		check("after a release")
	}
}

// TestRefusedUnmapKeepsDumpableCount: a release the system refuses after
// the region was unlocked and its exclusion from dumps dropped, as
// osmem.Unmap does on Windows (VirtualUnlock, and the unregistering from
// Windows Error Reporting, before VirtualFree) when it cannot lock and
// exclude the region again after, leaves the region mapped, unlocked and
// dumpable, and the counts say so; the retry that succeeds
// takes it back out. The counts used to leave the region out of the
// dumpable bytes after the refusal, and the retry made them negative; and
// they kept counting it locked. A fault hook models the refusal the same
// way on every system: it clears DontDump and Locked and refuses.
func TestRefusedUnmapKeepsDumpableCount(t *testing.T) {
	refuseAfterExclusion := func(r *osmem.Region) {
		osmem.SetFault(func(op osmem.Op) error {
			if op != osmem.OpUnmap {
				return nil
			}
			r.DontDump = false
			r.Locked, r.LockedLen = false, 0
			return osmem.ErrInjected
		})
	}
	counts := func(t *testing.T, when string, locked, unlocked, dumpable int64, want [3]int64) {
		t.Helper()
		if got := [3]int64{locked, unlocked, dumpable}; got != want {
			t.Fatalf("%s: locked, unlocked, dumpable bytes counted %v, want %v", when, got, want)
		}
	}
	t.Cleanup(func() { osmem.SetFault(nil) })

	t.Run("arena", func(t *testing.T) {
		s := relockSet(t)
		a, err := s.Map(osmem.PageSize())
		if err != nil {
			t.Fatal(err)
		}
		if !a.Reg.DontDump {
			t.Skip("no dump exclusion here")
		}
		if s.Dumpable() != 0 {
			t.Fatalf("%d bytes dumpable with the only arena excluded", s.Dumpable())
		}
		n := int64(len(a.Mem))
		// Release keeps a shared arena's region, mapped: a dedicated
		// arena's it unmaps.
		a.Dedicated = true
		refuseAfterExclusion(a.Reg)
		if err := s.Release(a, nil); err == nil {
			t.Fatal("Release succeeded under the refusal")
		}
		osmem.SetFault(nil)
		counts(t, "after the refused release", s.Locked(), s.Unlocked(), s.Dumpable(), [3]int64{0, n, n})
		if err := s.Release(a, nil); err != nil {
			t.Fatal(err)
		}
		counts(t, "after the retried release", s.Locked(), s.Unlocked(), s.Dumpable(), [3]int64{0, 0, 0})
	})

	t.Run("aux", func(t *testing.T) {
		var x Aux
		r, err := x.Map(func() (*osmem.Region, error) { return osmem.Map(osmem.PageSize(), osmem.Flags{Lock: true}) })
		if err != nil {
			t.Fatal(err)
		}
		if !r.DontDump {
			osmem.Unmap(r)
			t.Skip("no dump exclusion here")
		}
		n := int64(len(r.Data))
		refuseAfterExclusion(r)
		if err := x.Unmap(r); err == nil {
			t.Fatal("Unmap succeeded under the refusal")
		}
		osmem.SetFault(nil)
		counts(t, "after the refused unmap", x.Locked(), x.Unlocked(), x.Dumpable(), [3]int64{0, n, n})
		if err := x.Retry(); err != nil {
			t.Fatal(err)
		}
		counts(t, "after the retry", x.Locked(), x.Unlocked(), x.Dumpable(), [3]int64{0, 0, 0})
	})
}
