package memshuffle

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"unsafe"

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
		ai := sh.Slots.At(hs[0].slot()).Arena()
		for i, h := range hs {
			sl := sh.Slots.At(h.slot())
			if sl.Arena() != ai {
				t.Fatalf("entry %d in arena %d, entry 0 in %d", i, sl.Arena(), ai)
			}
			for _, o := range hs {
				if sh.Slots.At(o.slot()).Off < sl.Off {
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
	checkIndependent(t, &byOld, &byAge)
}

// checkIndependent fails t unless the new places counted in byOld (rows:
// old place) and in byAge (rows: age) are independent of the row, by a
// chi-square test at p = 1e-6.
func checkIndependent(t *testing.T, byOld, byAge *[8][8]int) {
	t.Helper()
	const critical = 121.35 // chi-square, 56 degrees of freedom, p = 1e-6
	for _, c := range []struct {
		name   string
		counts *[8][8]int
	}{{"old place", byOld}, {"age", byAge}} {
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

// shuffledOnce returns a Shuffler of one shard holding a few entries (too
// few to shuffle in place, so a Shuffle maps fresh arenas and empties the
// old ones whole), shuffled once, and their model.
func shuffledOnce(t *testing.T) (*Shuffler, model) {
	t.Helper()
	s := newTest(t, WithShards(1), WithArenaSize(4096))
	m := model{}
	for i := range minInPlace - 1 {
		allocPattern(t, s, m, 32, i)
	}
	if err := s.Shuffle(); err != nil {
		t.Fatal(err)
	}
	return s, m
}

// TestShuffleUnmapFails makes the munmaps of a Shuffle fail from each one
// in turn, where the shuffle empties whole arenas at once: an arena the
// system keeps must stay consistent (wiped, all of it free space), every
// entry keep its value, and the next Shuffle release it.
func TestShuffleUnmapFails(t *testing.T) {
	for n := int64(0); ; n++ {
		// The first Shuffle lays the entries out in one arena, with nothing
		// free below its top: the next empties it whole.
		s, m := shuffledOnce(t)
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

// TestShuffleInPlace checks the shuffle that moves entries within the
// arenas they fill: with a spare place in the arenas and without (then a
// region of its own holds one entry), in one arena and across two. Every
// entry keeps its value, the invariants hold after each Shuffle, no arena
// is mapped or released, and entries do move.
func TestShuffleInPlace(t *testing.T) {
	cases := []struct {
		name    string
		n, size int
	}{
		{"slack/arenas=1", 1000, minInPlaceSize},    // 128,000 bytes in an arena of 128 KiB
		{"exact/arenas=1", 1024, minInPlaceSize},    // 128 KiB in 128 KiB
		{"slack/arenas=2", 300, 65536},              // 300 entries in two arenas of 256
		{"exact/arenas=2", 512, 65536},              // 512 in two of 256
		{"tag/arenas=1", 1000, minInPlaceSize - 16}, // AES-256-GCM: 16 bytes of tag each
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := []Option{WithShards(1), WithArenaSize(4096)}
			if strings.HasPrefix(c.name, "tag") {
				opts = append(opts, WithCipher(AES256GCM))
			}
			s := newTest(t, opts...)
			m := model{}
			hs := make([]Handle, c.n)
			for i := range hs {
				hs[i] = allocPattern(t, s, m, c.size, i*7)
			}
			// The first Shuffle lays the entries out in fresh arenas, with
			// no free space: the next ones can work in place.
			if err := s.Shuffle(); err != nil {
				t.Fatal(err)
			}
			mustCheck(t, s)
			sh := &s.shards[0]
			regions := func() []*osmem.Region {
				var r []*osmem.Region
				for _, a := range sh.Arenas.List() {
					if a != nil {
						r = append(r, a.Reg)
					}
				}
				return r
			}
			before := regions()
			released := s.Stats().ArenasReleased
			for round := range 4 {
				old := make([]uintptr, len(hs))
				for i, h := range hs {
					old[i] = uintptr(unsafe.Pointer(unsafe.SliceData(memOf(s, h))))
				}
				if err := s.Shuffle(); err != nil {
					t.Fatal(err)
				}
				mustCheck(t, s)
				stayed := 0
				for i, h := range hs {
					if uintptr(unsafe.Pointer(unsafe.SliceData(memOf(s, h)))) == old[i] {
						stayed++
					}
				}
				// Each entry keeps its place with probability 1/n.
				if stayed > 8 {
					t.Fatalf("round %d: %d of %d entries kept their place", round, stayed, c.n)
				}
			}
			if !slices.Equal(regions(), before) || s.Stats().ArenasReleased != released {
				t.Fatalf("arenas changed: %d regions before, %d after; %d released", len(before), len(regions()), s.Stats().ArenasReleased-released)
			}
			verifyModel(t, s, m)
		})
	}
}

// TestShufflePermutationUniformInPlace is TestShufflePermutationUniform
// for the shuffle in place: 256 entries, places and ages counted in eight
// bins of 32. It also counts the entries that keep their exact place: one
// a round on average for a uniform permutation, so over 300 rounds a
// Poisson count of mean 300, which must lie within 4.9 standard deviations
// (p < 1e-6). Drawing j from [0, n) scored 896 against old place; Sattolo's
// algorithm, which never leaves an entry in place, passes the bins but
// not the count.
func TestShufflePermutationUniformInPlace(t *testing.T) {
	const n, size, bins = minInPlace, minInPlaceSize, 8
	rounds := 300
	s := newTest(t, WithShards(1), WithArenaSize(64<<10)) // every entry in one arena, whatever the memlock limit
	hs := make([]Handle, n)
	for i := range hs {
		h, err := Alloc[byte](s, size)
		if err != nil {
			t.Fatal(err)
		}
		hs[i] = h
	}
	if err := s.Shuffle(); err != nil {
		t.Fatal(err)
	}
	sh := &s.shards[0]
	place := func() []int {
		sh.mu.Lock()
		defer sh.mu.Unlock()
		p := make([]int, n)
		for i, h := range hs {
			sl := sh.Slots.At(h.slot())
			if sl.Arena() != sh.Arenas.Cur().Index || sl.Off%size != 0 || sl.Off/size >= n {
				t.Fatalf("entry %d at arena %d offset %d: not on the grid of the current arena", i, sl.Arena(), sl.Off)
			}
			p[i] = int(sl.Off / size)
		}
		return p
	}
	var byOld, byAge [bins][bins]int
	stayed := 0
	old := place()
	released := s.Stats().ArenasReleased
	for range rounds {
		if err := s.Shuffle(); err != nil {
			t.Fatal(err)
		}
		cur := place()
		for i := range n {
			byOld[old[i]*bins/n][cur[i]*bins/n]++
			byAge[i*bins/n][cur[i]*bins/n]++
			if cur[i] == old[i] {
				stayed++
			}
		}
		old = cur
	}
	if s.Stats().ArenasReleased != released {
		t.Fatal("the shuffle did not work in place")
	}
	if lo, hi := 215, 385; stayed < lo || stayed > hi {
		t.Errorf("%d entries kept their place over %d rounds, want %d to %d", stayed, rounds, lo, hi)
	} else {
		t.Logf("%d entries kept their place over %d rounds", stayed, rounds)
	}
	checkIndependent(t, &byOld, &byAge)
}

// TestShuffleInPlaceAfterFrees shuffles in place after a shuffle into
// fresh arenas that took the indexes of released ones, so the places are
// numbered out of the order the entries fill them: the moves then run in
// chains from empty places as well as in cycles.
func TestShuffleInPlaceAfterFrees(t *testing.T) {
	s := newTest(t, WithShards(1), WithArenaSize(4096))
	m := model{}
	var hs []Handle
	for i := range 700 {
		hs = append(hs, allocPattern(t, s, m, 65536, i*3))
	}
	for round := range 6 {
		if err := s.Shuffle(); err != nil {
			t.Fatal(err)
		}
		mustCheck(t, s)
		verifyModel(t, s, m)
		if round%2 == 1 {
			continue // the next Shuffle works in place
		}
		// Freeing entries leaves holes, and sends the next Shuffle to
		// fresh arenas.
		for k := range 30 {
			i := k * 11
			if err := s.Free(hs[i]); err != nil {
				t.Fatal(err)
			}
			delete(m, hs[i])
			hs = slices.Delete(hs, i, i+1)
		}
		mustCheck(t, s)
	}
	verifyModel(t, s, m)
}
