package memshuffle

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestShufflePermutationUniform checks that Shuffle gives every entry a new
// place that is uniformly random and independent of its old place and of
// its age (the order entries were made in). A shard of 8 entries is
// shuffled many times; the counts of (old place, new place) and of
// (age, new place) must fit a uniform distribution by a chi-square test
// with 56 degrees of freedom at p = 1e-6, so a correct shuffle fails it
// about once in a million runs. Entries of one size move in the order of
// their places, entries of two sizes in slot order: both are tested.
// Swapping in the permutation with j drawn from [0, k) (Sattolo's
// algorithm: no entry keeps its rank) scored 9,194 against old place with
// one size, and 234 against old place and 9,205 against age with two;
// drawing j from [0, n) (the textbook biased shuffle) scored 7,467, and
// 795 and 7,585.
func TestShufflePermutationUniform(t *testing.T) {
	for _, sizes := range [][]int{{32}, {32, 48}} {
		t.Run(fmt.Sprint("sizes=", sizes), func(t *testing.T) {
			testPermutationUniform(t, sizes)
		})
	}
}

func testPermutationUniform(t *testing.T, sizes []int) {
	const n = 8
	rounds := 8000
	if testing.Short() {
		rounds = 4000
	}
	s := newTest(t, WithShards(1))
	hs := make([]Handle, n)
	for i := range hs {
		h, err := Alloc[byte](s, sizes[i%len(sizes)])
		if err != nil {
			t.Fatal(err)
		}
		hs[i] = h
	}
	sh := &s.shards[0]
	// place returns each entry's place: the order of the entries by
	// offset in the shard's one arena.
	place := func() [n]int {
		sh.mu.Lock()
		defer sh.mu.Unlock()
		var p [n]int
		ai := sh.slot(hs[0].slot()).arena
		for i, h := range hs {
			sl := sh.slot(h.slot())
			if sl.arena != ai {
				t.Fatalf("entry %d in arena %d, entry 0 in %d", i, sl.arena, ai)
			}
			for _, o := range hs {
				if sh.slot(o.slot()).off < sl.off {
					p[i]++
				}
			}
		}
		return p
	}
	var byOld, byAge [n][n]int
	old := place()
	for range rounds {
		if err := s.Shuffle(); err != nil {
			t.Fatal(err)
		}
		cur := place()
		for i := range n {
			byOld[old[i]][cur[i]]++
			byAge[i][cur[i]]++
		}
		old = cur
	}
	const critical = 121.35 // chi-square, 56 degrees of freedom, p = 1e-6
	for _, c := range []struct {
		name   string
		counts *[n][n]int
	}{{"old place", &byOld}, {"age", &byAge}} {
		if x := chiSquareRows(c.counts[:]); x > critical {
			t.Errorf("new place depends on %s: chi-square %.1f > %.1f; counts %v", c.name, x, critical, *c.counts)
		} else {
			t.Logf("new place against %s: chi-square %.1f (critical %.1f)", c.name, x, critical)
		}
	}
}

// chiSquareRows is the chi-square statistic of counts against rows that
// are each uniform over the columns.
func chiSquareRows[R ~[8]int](counts []R) float64 {
	var x float64
	for _, row := range counts {
		total := 0
		for _, c := range row {
			total += c
		}
		e := float64(total) / float64(len(row))
		for _, c := range row {
			d := float64(c) - e
			x += d * d / e
		}
	}
	return x
}

// TestShuffleUnmapFails makes the munmaps of a Shuffle fail from each one
// in turn, where the shuffle empties whole arenas at once: an arena the
// system keeps must stay consistent (wiped, all of it free space), every
// entry keep its value, and the next Shuffle release it.
func TestShuffleUnmapFails(t *testing.T) {
	for n := int64(0); ; n++ {
		s := newTest(t, WithShards(1), WithArenaSize(4096))
		m := model{}
		for i := range 1000 {
			h, err := Alloc[byte](s, 32)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := RentSlice[byte](s, h)
			for j := range b {
				b[j] = byte(i + j)
			}
			m[h] = bytes.Clone(b)
			s.Return(h)
		}
		// The first Shuffle lays the entries out in one arena, with nothing
		// free below its top: the next empties it whole.
		if err := s.Shuffle(); err != nil {
			t.Fatal(err)
		}
		var calls atomic.Int64
		osmem.SetFault(func(o osmem.Op) error {
			if o == osmem.OpUnmap && calls.Add(1)-1 >= n {
				return osmem.ErrInjected
			}
			return nil
		})
		t.Cleanup(func() { osmem.SetFault(nil) })
		if err := s.Shuffle(); err != nil && !errors.Is(err, osmem.ErrInjected) {
			t.Fatalf("Shuffle: %v", err)
		}
		total := calls.Load()
		osmem.SetFault(nil)
		mustCheck(t, s)
		verifyModel(t, s, m)
		if err := s.Shuffle(); err != nil {
			t.Fatal(err)
		}
		mustCheck(t, s)
		if st := s.Stats(); st.Arenas != 1 {
			t.Fatalf("after munmap %d failed, the next Shuffle left %d arenas", n, st.Arenas)
		}
		verifyModel(t, s, m)
		if n >= total {
			if n == 0 {
				t.Fatal("Shuffle made no munmap call")
			}
			break
		}
	}
}
