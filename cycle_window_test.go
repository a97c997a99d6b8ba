package memshuffle

import (
	"context"
	mrand "math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestCycleMovesEntriesMadeWhileOrderDrawn: an entry allocated while a
// cycle draws a shard's order, with no lock held, goes into the arena
// that was current before the cycle; the cycle must move it out with the
// rest. Left out of the order, it stayed in memory from before the cycle,
// and kept that arena mapped, until the next cycle.
func TestCycleMovesEntriesMadeWhileOrderDrawn(t *testing.T) {
	s := newTest(t, WithShards(1))
	for range 10 {
		if _, err := Alloc[byte](s, 64); err != nil {
			t.Fatal(err)
		}
	}
	sh := &s.shards[0]
	var h Handle
	var before *osmem.Region
	afterCycleOrder = func(c *shard) {
		if c != sh || before != nil {
			return
		}
		var err error
		if h, err = Alloc[byte](s, 64); err != nil {
			t.Error(err)
			return
		}
		sh.mu.Lock()
		before = sh.Arenas.Get(sh.Slots.At(h.slot()).Arena()).Reg
		sh.mu.Unlock()
	}
	t.Cleanup(func() { afterCycleOrder = nil })
	oneCycle(t, s)
	if before == nil {
		t.Fatal("no entry was allocated while the order was drawn")
	}
	sh.mu.Lock()
	after := sh.Arenas.Get(sh.Slots.At(h.slot()).Arena()).Reg
	sh.mu.Unlock()
	if after == before {
		t.Fatal("the cycle left the entry allocated while it drew its order where it was")
	}
	mustCheck(t, s)
}

// TestJoinOrderUniform: slots that join a cycle's order after it was drawn
// take uniformly random places in it, as the slots drawn with it do: by a
// chi-square test of each slot's place at p = 1e-6 (see checkIndependent),
// whether 0, 3 or all 8 slots join. Appending them scored 192,031 with 3
// joining; drawing the place from [0, k), as Sattolo does, 6,076.
func TestJoinOrderUniform(t *testing.T) {
	const rounds = 8000
	rng := mrand.New(mrand.NewChaCha8([32]byte{1}))
	for _, drawn := range []int{8, 5, 0} {
		var byAge [8][8]int
		for range rounds {
			order := joinOrder(rng, permute(rng, nil, drawn), 8)
			if len(order) != 8 {
				t.Fatalf("%d slots in the order, want 8", len(order))
			}
			for place, i := range order {
				byAge[i][place]++
			}
		}
		const critical = 121.35 // chi-square, 56 degrees of freedom, p = 1e-6
		if x := chiSquareRows(byAge[:]); x > critical {
			t.Errorf("%d drawn, %d joined: place depends on the slot: chi-square %.1f > %.1f; counts %v", drawn, 8-drawn, x, critical, byAge)
		}
	}
}

// TestCycleStopsBetweenOrders: a background cycle that is stopped while it
// draws the shards' orders draws no further one: for large shards each
// takes milliseconds, and stop, Close and Purge wait for the cycle.
func TestCycleStopsBetweenOrders(t *testing.T) {
	s := newTest(t, WithShards(4))
	for range 64 {
		if _, err := Alloc[byte](s, 32); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var drawn atomic.Int32
	afterCycleOrder = func(sh *shard) {
		if sh.s != s {
			return // another test's Shuffler
		}
		drawn.Add(1)
		cancel()
	}
	t.Cleanup(func() { afterCycleOrder = nil })
	stop, err := s.StartBackgroundShuffle(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	<-ctx.Done()
	stop()
	if n := drawn.Load(); n != 1 {
		t.Fatalf("%d shards' orders drawn, want 1: the cycle drew on after it was stopped", n)
	}
	mustCheck(t, s)
}
