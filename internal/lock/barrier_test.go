package lock

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestBarrierOrdersRelease runs the one interleaving the heavy barrier is
// for, many times over, as a store-buffering litmus test: a holder lets go
// (release) at about the moment a sleeper counts itself as waiting and
// tries the lock once more. The outcome that loses a wake-up, the holder
// seeing no sleeper while the sleeper still sees the lock held, must never
// happen. The holder waits a different number of spins in each round, so
// that the two sides meet at every offset. Without heavyBarrier, x86 lets
// the holder's load of the count pass its store of the lock, and this test
// sees that outcome.
func TestBarrierOrdersRelease(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("the two sides must run at once: needs two CPUs")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	rounds := 50000
	if testing.Short() {
		rounds = 10000
	}
	var (
		m           Mutex
		start, done atomic.Int64 // the round the sleeper may start, and has done
		locked      bool         // the sleeper's last try took the lock
	)
	go func() { // the sleeper
		for r := int64(1); r <= int64(rounds); r++ {
			for s := start.Load(); s != r; s = start.Load() {
				if s < 0 { // the holder ran out of time
					return
				}
			}
			m.waiting.Add(1)
			heavyBarrier()
			locked = m.state.CompareAndSwap(0, 1)
			done.Store(r)
		}
	}()
	lost := 0
	end, r := roundsEnd(), int64(1)
	for ; r <= int64(rounds) && !end(r); r++ { // the holder
		m.state.Store(1)
		m.waiting.Store(0)
		start.Store(r)
		for range r % 64 {
			pause()
		}
		sawSleeper := release(&m) == wakeOne
		for done.Load() != r {
		}
		if !sawSleeper && !locked {
			lost++
		}
	}
	start.Store(-1)
	if lost > 0 {
		t.Fatalf("%d of %d rounds lost a wake-up: the holder saw no sleeper and the sleeper saw the lock held", lost, r-1)
	}
	t.Logf("%d rounds of %d", r-1, rounds)
}

// roundsEnd returns a test of whether a litmus test's holder, at round r,
// has run out of time: the rounds need both sides on a CPU at once, and
// on a loaded machine each can wait for a time slice, so that a million
// rounds outlasted the test run's timeout (19 minutes under -race). It
// reads the clock every 1,024 rounds; a quiet machine does every round
// well within the minute.
func roundsEnd() func(r int64) bool {
	deadline := time.Now().Add(time.Minute)
	if testing.Short() {
		deadline = time.Now().Add(20 * time.Second)
	}
	return func(r int64) bool { return r%1024 == 0 && time.Now().After(deadline) }
}

// TestEnabled checks that the plain-store Unlock is in use where it can
// be: on linux/amd64 without the race detector, whenever the kernel
// offers membarrier's private expedited command. Otherwise the litmus test
// above would test the fallback only.
func TestEnabled(t *testing.T) {
	if !canBeAsymmetric {
		t.Skip("Unlock uses an atomic store on this platform or under the race detector")
	}
	if !asymmetric && register() {
		t.Fatal("membarrier works here, but Enable left Unlock on the atomic store")
	}
	t.Logf("plain-store Unlock: %v", asymmetric)
}
