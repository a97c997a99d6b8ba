package memshuffle

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// churnWorkers runs n goroutines, each with handles of its own and a
// random stream of its own (seeded with its number and seed), calling step
// with them until the returned stop, which waits for them. step returns
// the handles it leaves held.
func churnWorkers(n int, seed uint64, step func(rng *rand.Rand, hs []Handle) []Handle) (stop func()) {
	var done atomic.Bool
	var wg sync.WaitGroup
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), seed))
			var hs []Handle
			for !done.Load() {
				hs = step(rng, hs)
			}
		}()
	}
	return func() {
		done.Store(true)
		wg.Wait()
	}
}

// freeAt frees hs[k] and drops it from hs.
func freeAt(s *Shuffler, hs []Handle, k int) []Handle {
	_ = s.Free(hs[k])
	hs[k] = hs[len(hs)-1]
	return hs[:len(hs)-1]
}

// vmLck reads the process's locked memory, VmLck, in bytes.
func vmLck(t *testing.T) int64 {
	t.Helper()
	n, ok := osmem.VMLocked()
	if !ok {
		t.Skip("no VmLck in /proc/self/status")
	}
	return int64(n)
}

// TestLockedBytesIsVmLck compares Stats.LockedBytes with the growth of the
// process's VmLck while entries of every size come and go, are rented and
// viewed, and the background shuffler maps spares and releases arenas; in
// every cipher mode, and with secret memory.
//
// A sample holds every shard's lock, so no entry or arena changes, and
// reads both counts between the lock changes the background shuffler
// makes without a shard lock (a spare's lock, the unmap of a released
// arena), each of which changes the two counts in one step (Aux.Quiet):
// every sample must agree. A spare locked apart from its count made about
// one sample in 600 fall short. Once the workload and the background
// shuffler stop, the two must agree exactly, and after Close VmLck must
// be back where it started.
func TestLockedBytesIsVmLck(t *testing.T) {
	if raceBuild {
		// Under the race detector a spare mapped or an arena unmapped
		// outside a shard lock can take longer than the samples allow;
		// the run without -race asserts the equality.
		t.Skip("timing-dependent; run without -race")
	}
	cases := []struct {
		name string
		opts []Option
	}{
		{"ctr", []Option{WithCipher(AES256CTR)}},
		{"gcm", []Option{WithCipher(AES256GCM)}},
		{"chacha", []Option{WithCipher(ChaCha20Poly1305)}},
		{"secret-gcm", []Option{WithCipher(AES256GCM), WithSecretMemory()}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A Shuffler an earlier test left open may hold idle regions,
			// which a lock refused at the limit gives back: VmLck would
			// then fall by memory this Shuffler never counted.
			store.GiveBackIdle(store.IdleDrains())
			base := vmLck(t)
			s, err := New(append(c.opts, WithShards(4))...)
			if errors.Is(err, ErrNoSecretMemory) || errors.Is(err, ErrLockFailed) {
				t.Skip(err)
			}
			if err != nil {
				t.Fatal(err)
			}
			closed := false
			defer func() {
				if !closed {
					s.Close()
				}
			}()
			// The example: one 4 MiB entry, rented once.
			big, err := Alloc[byte](s, 4<<20)
			if errors.Is(err, ErrLockFailed) {
				// An RLIMIT_MEMLOCK too small for the entry: the equality
				// needs a larger limit.
				t.Skip(err)
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := RentSlice[byte](s, big); errors.Is(err, ErrLockFailed) {
				t.Skip(err)
			} else if err != nil {
				t.Fatal(err)
			}
			if err := s.Return(big); err != nil {
				t.Fatal(err)
			}
			if got, want := s.Stats().LockedBytes, vmLck(t)-base; got != want {
				t.Fatalf("one 4 MiB entry rented once: Stats.LockedBytes %d, VmLck grew by %d", got, want)
			}
			stopBG, err := s.StartBackgroundShuffle(context.Background(), 0)
			if err != nil {
				t.Fatal(err)
			}
			stopChurn := churnWorkers(2, 7, func(rng *rand.Rand, hs []Handle) []Handle {
				switch {
				case len(hs) < 200 || rng.IntN(3) == 0:
					n := 32 + rng.IntN(64<<10)
					if rng.IntN(100) == 0 {
						n = 1 << 20
					}
					if h, err := Alloc[byte](s, n); err == nil {
						hs = append(hs, h)
					}
				case rng.IntN(2) == 0:
					h := hs[rng.IntN(len(hs))]
					if _, err := ViewSlice[byte](s, h); err == nil {
						s.ReturnView(h)
					}
				default:
					hs = freeAt(s, hs, rng.IntN(len(hs)))
				}
				return hs
			})
			for i := range 100 {
				if got, want := lockedAgainstVmLck(t, s, base); got != want {
					stopChurn()
					stopBG()
					t.Fatalf("sample %d: Stats.LockedBytes %d, VmLck grew by %d", i, got, want)
				}
			}
			stopChurn()
			stopBG()
			if got, want := s.Stats().LockedBytes, vmLck(t)-base; got != want {
				t.Fatalf("at rest: Stats.LockedBytes %d, VmLck grew by %d", got, want)
			}
			mustCheck(t, s)
			closed = true
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if got := vmLck(t) - base; got != 0 {
				t.Fatalf("after Close VmLck is %d bytes above where it started", got)
			}
		})
	}
}

// lockedAgainstVmLck returns Stats' locked bytes and the growth of VmLck
// since base, read together with every shard locked.
func lockedAgainstVmLck(t *testing.T, s *Shuffler, base int64) (got, want int64) {
	s.lockAll()
	defer s.unlockAll()
	// With the shards held, what runs meanwhile is what needs no shard
	// lock: the background shuffler's spares and unmaps, whose counts the
	// sample is there to catch mid-change.
	time.Sleep(2 * time.Millisecond)
	for {
		// A region the background shuffler maps or unmaps with no shard
		// lock held is in the system's count and not yet in Stats, or the
		// other way round, until its syscall returns: read both between
		// such calls.
		before, quiet := s.aux.Quiet()
		var st Stats
		s.gauges(&st)
		vm := vmLck(t)
		if after, still := s.aux.Quiet(); quiet && still && after == before {
			return st.LockedBytes, vm - base
		}
		runtime.Gosched()
	}
}
