package memshuffle

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestAllocMapsUnlocked: an Alloc that needs a new arena maps and locks it
// with the shard unlocked, so that the Rents and Returns of the shard's
// other entries do not wait for the system to back every page of it (40
// ms for an arena of 16 MiB, when it was done under the lock). Each time
// the system is asked to map or lock memory during an Alloc, the shard
// lock must be free; and the entries all hold their values after.
func TestAllocMapsUnlocked(t *testing.T) {
	s := newTest(t, WithShards(1), WithArenaSize(4096))
	sh := &s.shards[0]
	asked, held := lockedSystemCalls(t, sh, nil, osmem.OpMap, osmem.OpLock)
	m := model{}
	for i := range 200 {
		allocPattern(t, s, m, 1000+i*40, i) // a hundred arenas and more, dedicated ones past 4 KiB
	}
	osmem.SetFault(nil)
	verifyModel(t, s, m)
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
	if held.Load() != 0 && s.Stats().LockFailures > 0 {
		t.Skipf("the memory-lock limit left arenas unlocked: %d of the %d calls may be the relock after a release, which runs under the shard lock (SECURITY.md)", held.Load(), asked.Load())
	}
	if asked.Load() == 0 || held.Load() != 0 {
		t.Errorf("the shard lock was held for %d of the %d times Alloc asked the system for memory", held.Load(), asked.Load())
	}
}

// needLockRoom skips the test when RLIMIT_MEMLOCK cannot hold n bytes: a
// test of LockStrict whose point is not the limit itself (as user nobody,
// 8 MiB holds no oversize entry).
func needLockRoom(t *testing.T, n int) {
	t.Helper()
	if lim := osmem.LockLimit(); lim >= 0 && lim < int64(n) {
		t.Skipf("RLIMIT_MEMLOCK %d cannot hold %d locked bytes", lim, n)
	}
}

// skipUnlockedShard skips a test that needs shard i's arenas locked, which
// a small limit denies even where the Shuffler's own page got locked.
func skipUnlockedShard(t *testing.T, s *Shuffler, i int) {
	t.Helper()
	if u := s.shards[i].Arenas.Unlocked(); u != 0 {
		t.Skipf("the memory-lock limit left %d bytes of shard %d's arenas unlocked (RLIMIT_MEMLOCK %d)", u, i, osmem.LockLimit())
	}
}

// lockedSystemCalls installs a fault hook, removed at the test's end, that
// counts the calls of the operations ops (while watch, if not nil, says
// so) in asked, and in held those made while sh's lock was held.
func lockedSystemCalls(t *testing.T, sh *shard, watch func() bool, ops ...osmem.Op) (asked, held *atomic.Int32) {
	return lockedSystemCallsThen(t, sh, watch, nil, ops...)
}

// lockedSystemCallsThen is lockedSystemCalls that also calls each, if not
// nil, with every operation, watched or not, before counting it.
func lockedSystemCallsThen(t *testing.T, sh *shard, watch func() bool, each func(osmem.Op), ops ...osmem.Op) (asked, held *atomic.Int32) {
	asked, held = new(atomic.Int32), new(atomic.Int32)
	osmem.SetFault(func(o osmem.Op) error {
		if each != nil {
			each(o)
		}
		if slices.Contains(ops, o) && (watch == nil || watch()) {
			asked.Add(1)
			if !sh.mu.TryLock() {
				held.Add(1)
			} else {
				sh.mu.Unlock()
			}
		}
		return nil
	})
	t.Cleanup(func() { osmem.SetFault(nil) })
	return asked, held
}

// TestHotPathsAllocateNothing: Alloc, Free, Rent and Return of 32 bytes
// make no Go heap allocation in the steady state (a new chunk of slots or
// a new arena's record, once per thousands of calls, rounds away), with
// and without a TTL. A variable whose address reached errors.As once cost
// every Alloc one, unseen by any test.
func TestHotPathsAllocateNothing(t *testing.T) {
	if raceBuild {
		t.Skip("the race detector allocates")
	}
	for _, opts := range [][]Option{nil, {WithDefaultTTL(time.Hour)}} {
		s := newTest(t, append([]Option{WithShards(1)}, opts...)...)
		hs := make([]Handle, 0, 1000)
		alloc := testing.AllocsPerRun(1000, func() {
			h, err := Alloc[byte](s, 32)
			if err != nil {
				t.Fatal(err)
			}
			hs = append(hs, h)
		})
		k := 0
		rent := testing.AllocsPerRun(1000, func() {
			h := hs[k%len(hs)]
			k++
			if _, err := RentSlice[byte](s, h); err != nil {
				t.Fatal(err)
			}
			if err := s.Return(h); err != nil {
				t.Fatal(err)
			}
		})
		k = 0
		free := testing.AllocsPerRun(len(hs)-1, func() {
			if err := s.Free(hs[k]); err != nil {
				t.Fatal(err)
			}
			k++
		})
		if alloc != 0 || rent != 0 || free != 0 {
			t.Errorf("with %d options: %v allocations per Alloc, %v per Rent+Return, %v per Free; want none", len(opts), alloc, rent, free)
		}
	}
}
