package memshuffle

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// churnBound is the most a Shuffler may map for its live entries: a quarter
// more than they hold, plus one arena of the minimum size for every shard
// that holds any.
func churnBound(s *Shuffler) (mapped, bound int64) {
	var live int64
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		mapped += sh.Arenas.Mapped()
		live += sh.Counts.LiveBytes()
		if sh.Arenas.Mapped() > 0 {
			bound += int64(s.cfg.arenaSize)
		}
		sh.mu.Unlock()
	}
	return mapped, bound + live + live/4
}

// churn allocates n entries of sizes drawn by size, then frees every entry
// and replaces it with a new one, in a random order, rounds times, checking
// at every step that the Shuffler maps no more than churnBound allows.
func churn(t *testing.T, s *Shuffler, n, rounds int, size func(*rand.Rand) int) (peak float64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(n), uint64(rounds)))
	alloc := func() Handle {
		var h Handle
		var err error
		if sz := size(rng); sz%8 == 0 && rng.IntN(2) == 0 {
			h, err = Alloc[uint64](s, sz/8)
		} else {
			h, err = Alloc[byte](s, sz)
		}
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	hs := make([]Handle, n)
	for i := range hs {
		hs[i] = alloc()
	}
	for round := range rounds {
		rng.Shuffle(len(hs), func(i, j int) { hs[i], hs[j] = hs[j], hs[i] })
		for i := range hs {
			if err := s.Free(hs[i]); err != nil {
				t.Fatal(err)
			}
			hs[i] = alloc()
			mapped, bound := churnBound(s)
			if mapped > bound {
				t.Fatalf("round %d, step %d: %d bytes mapped, more than the bound of %d", round, i, mapped, bound)
			}
			peak = max(peak, float64(mapped)/float64(bound))
		}
		mustCheck(t, s)
	}
	st := s.Stats()
	t.Logf("after %d rounds: %d live bytes, %d mapped (%.2fx), %d arenas; peak mapped/bound %.3f",
		rounds, st.LiveBytes, st.MappedBytes, float64(st.MappedBytes)/float64(st.LiveBytes), st.Arenas, peak)
	return peak
}

// TestChurnSmall: freed space is reused, so random churn at a steady live
// size keeps memory near the live size without any Shuffle.
//
// One shard: a shard leaves up to a minimum arena of holes before it
// compacts (see store.Shard.Wasteful), which churnBound's quarter covers
// only when each shard holds several arenas' worth. With the default
// shard count that depended on GOMAXPROCS (32 shards of 15 KB at 8 failed)
// and on which P the test's goroutine ran on, which decides the shards it
// allocates in.
func TestChurnSmall(t *testing.T) {
	s := newTest(t, WithShards(1))
	churn(t, s, 10000, 20, func(r *rand.Rand) int { return 32 + r.IntN(33) })
}

// TestChurnMixed is TestChurnSmall with sizes from 32 B to 64 KiB, drawn
// uniformly in bytes, so large entries hold most of the data.
func TestChurnMixed(t *testing.T) {
	if testing.Short() {
		t.Skip("moves about 2.5 GB")
	}
	s := newTest(t)
	churn(t, s, 2000, 20, func(r *rand.Rand) int { return 32 + r.IntN(64<<10-31) })
}

// TestEmptyMapsNothing: once every entry is freed, the next Shuffle leaves
// no arena mapped, the current one included, and nothing locked but the
// Shuffler's own region; and arenas shrink back with the live data.
func TestEmptyMapsNothing(t *testing.T) {
	for _, c := range []Cipher{AES256CTR, AES256GCM} {
		t.Run(c.String(), func(t *testing.T) {
			s := newTest(t, WithCipher(c))
			own := s.Stats().LockedBytes + s.Stats().UnlockedBytes
			hs := make([]Handle, 20000)
			for i := range hs {
				h, err := Alloc[byte](s, 1024)
				if err != nil {
					t.Fatal(err)
				}
				hs[i] = h
			}
			if _, err := RentSlice[byte](s, hs[0]); err != nil {
				t.Fatal(err)
			}
			if err := s.Return(hs[0]); err != nil {
				t.Fatal(err)
			}
			// Shrink to a tenth: a Shuffle brings arenas down with it.
			for i, h := range hs {
				if i%10 != 0 {
					if err := s.Free(h); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := s.Shuffle(); err != nil {
				t.Fatal(err)
			}
			mustCheck(t, s)
			mapped, bound := churnBound(s)
			if mapped > bound {
				t.Fatalf("after shrinking: %d bytes mapped, bound %d", mapped, bound)
			}
			for i, h := range hs {
				if i%10 == 0 {
					if err := s.Free(h); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := s.Shuffle(); err != nil {
				t.Fatal(err)
			}
			mustCheck(t, s)
			st := s.Stats()
			if st.Arenas != 0 || st.MappedBytes != 0 || st.LockedBytes+st.UnlockedBytes != own {
				t.Fatalf("no entries, after Shuffle: %d arenas, %d bytes mapped, %d locked + %d unlocked (own region %d)",
					st.Arenas, st.MappedBytes, st.LockedBytes, st.UnlockedBytes, own)
			}
		})
	}
}

// TestEmptyMapsNothingBackground is TestEmptyMapsNothing with the
// background shuffler instead of Shuffle.
func TestEmptyMapsNothingBackground(t *testing.T) {
	s := newTest(t)
	hs := make([]Handle, 20000)
	for i := range hs {
		h, err := Alloc[byte](s, 1024)
		if err != nil {
			t.Fatal(err)
		}
		hs[i] = h
	}
	stop, err := s.StartBackgroundShuffle(context.Background(), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for _, h := range hs {
		if err := s.Free(h); err != nil {
			t.Fatal(err)
		}
	}
	// Two cycles from now: the second starts after every Free above.
	start := s.Stats().BackgroundCycles
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().BackgroundCycles < start+2 {
		if time.Now().After(deadline) {
			t.Fatal("no background cycle in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
	if st := s.Stats(); st.Arenas != 0 || st.MappedBytes != 0 {
		t.Fatalf("no entries, after a background cycle: %d arenas, %d bytes mapped", st.Arenas, st.MappedBytes)
	}
}
