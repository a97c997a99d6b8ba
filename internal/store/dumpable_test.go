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
