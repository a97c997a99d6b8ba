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
// the region's exclusion from dumps was dropped, as osmem.Unmap does on
// Windows (it unregisters the region from Windows Error Reporting before
// VirtualFree), leaves the region mapped and dumpable, and the counts say
// so; the retry that succeeds takes it back out. The counts used to leave
// the region out after the refusal, and the retry made them negative. A
// fault hook models the refusal the same way on every system: it clears
// DontDump and refuses.
func TestRefusedUnmapKeepsDumpableCount(t *testing.T) {
	refuseAfterExclusion := func(r *osmem.Region) {
		osmem.SetFault(func(op osmem.Op) error {
			if op != osmem.OpUnmap {
				return nil
			}
			r.DontDump = false
			return osmem.ErrInjected
		})
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
		refuseAfterExclusion(a.Reg)
		if err := s.Release(a, nil); err == nil {
			t.Fatal("Release succeeded under the refusal")
		}
		osmem.SetFault(nil)
		if got, want := s.Dumpable(), int64(len(a.Mem)); got != want {
			t.Fatalf("after the refused release: %d bytes counted dumpable, the arena left holds %d", got, want)
		}
		if err := s.Release(a, nil); err != nil {
			t.Fatal(err)
		}
		if got := s.Dumpable(); got != 0 {
			t.Fatalf("after the retried release: %d bytes counted dumpable, want 0", got)
		}
	})

	t.Run("aux", func(t *testing.T) {
		var x Aux
		r, err := x.Map(func() (*osmem.Region, error) { return osmem.Map(osmem.PageSize(), osmem.Flags{}) })
		if err != nil {
			t.Fatal(err)
		}
		if !r.DontDump {
			osmem.Unmap(r)
			t.Skip("no dump exclusion here")
		}
		refuseAfterExclusion(r)
		if err := x.Unmap(r); err == nil {
			t.Fatal("Unmap succeeded under the refusal")
		}
		osmem.SetFault(nil)
		if got, want := x.Dumpable(), int64(len(r.Data)); got != want {
			t.Fatalf("after the refused unmap: %d bytes counted dumpable, the region left holds %d", got, want)
		}
		if err := x.Retry(); err != nil {
			t.Fatal(err)
		}
		if got := x.Dumpable(); got != 0 {
			t.Fatalf("after the retry: %d bytes counted dumpable, want 0", got)
		}
	})
}
