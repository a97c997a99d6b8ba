package lock

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMutualExclusion has goroutines, more than the processors and more
// processors than CPUs, add to a plain counter under the lock while the
// garbage collector runs in a loop: every increment must count, and the
// race detector must see no race.
func TestMutualExclusion(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2 * runtime.NumCPU()))
	stop := make(chan struct{})
	var gcs sync.WaitGroup
	gcs.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	})
	defer func() { close(stop); gcs.Wait() }()
	const goroutines, each = 16, 20000
	var m Mutex
	var counter, inside int
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if (g+i)%3 == 0 {
					for !m.TryLock() {
						runtime.Gosched()
					}
				} else {
					m.Lock()
				}
				inside++
				if inside != 1 {
					t.Errorf("%d goroutines inside the lock", inside)
				}
				counter++
				if i%64 == 0 {
					runtime.Gosched() // hold it across a reschedule now and then
				}
				inside--
				m.Unlock()
			}
		})
	}
	wg.Wait()
	if counter != goroutines*each {
		t.Fatalf("counter %d, want %d", counter, goroutines*each)
	}
}

// TestSleeperWoken holds the lock long enough that a second goroutine
// stops spinning and sleeps (Contended says so), then lets go: the sleeper
// must get the lock, and Contended must say false once it has.
func TestSleeperWoken(t *testing.T) {
	for range 50 {
		var m Mutex
		m.Lock()
		got := sleeper(t, &m)
		m.Unlock()
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("the sleeper was not woken by Unlock")
		}
		if m.Contended() {
			t.Fatal("Contended after the sleeper took the lock")
		}
		if m.TryLock() {
			t.Fatal("TryLock took a lock the woken sleeper holds")
		}
		m.Unlock()
		if !m.TryLock() {
			t.Fatal("TryLock failed on a free lock")
		}
	}
}

// TestNoLostWakeup hands the lock back and forth between goroutines that
// each hold it briefly and often go to sleep on it, many thousands of
// times: a sleeper that missed its wake-up (the window the heavy barrier
// closes) near the end, with nobody left to take the lock again, would
// wait for good, which the deadline catches. The others' Unlocks wake a
// sleeper that missed one earlier, so TestWokenSleeperSeesRelease tests
// the race itself. It counts how many acquisitions slept, so that a run where
// nobody ever slept cannot pass unnoticed.
func TestNoLostWakeup(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4 * runtime.NumCPU()))
	// A sleeper tries again every recheck, token or not: with that, a lost
	// wake-up would cost a few milliseconds here, not the deadline.
	defer func(d time.Duration) { recheck = d }(recheck)
	recheck = time.Hour
	const goroutines = 8
	rounds := 20000
	if testing.Short() {
		rounds = 4000
	}
	var m Mutex
	var slept atomic.Int64
	done := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				for range rounds {
					if !m.TryLock() {
						if m.Contended() {
							slept.Add(1)
						}
						m.lockSlow()
					}
					for range 200 { // hold it for a little while
						pause()
					}
					m.Unlock()
				}
			})
		}
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("hung: %d waiting on the lock", m.waiting.Load())
	}
	if slept.Load() == 0 {
		t.Fatal("no acquisition found the lock contended: the sleeping path was not exercised")
	}
	t.Logf("%d acquisitions found sleepers", slept.Load())
}

// TestWaiterNotStarved has one goroutine take the lock in a loop and be
// descheduled each time while it holds it, on one P, as a holder preempted
// in its critical section is. A woken waiter then runs only while the lock
// is held: one that merely competed for the lock, as at every wake-up
// before, never got it. Once it has waited starveAfter it must be handed
// the lock at the next Unlock.
func TestWaiterNotStarved(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var m Mutex
	var stop atomic.Bool
	var laps atomic.Int64
	var loop sync.WaitGroup
	loop.Go(func() {
		for !stop.Load() {
			m.Lock()
			runtime.Gosched()
			m.Unlock()
			laps.Add(1)
		}
	})
	defer func() { stop.Store(true); loop.Wait() }()
	const limit = 5 * time.Second
	for i := range 5 {
		// The loop yields only while it holds the lock: once it has gone
		// round, it holds it whenever another goroutine runs.
		for n := laps.Load(); laps.Load() < n+2; {
			runtime.Gosched()
		}
		got := make(chan time.Duration, 1) // never blocks a waiter the test gave up on
		go func() {
			start := time.Now()
			m.Lock()
			got <- time.Since(start)
			m.Unlock()
		}()
		select {
		case waited := <-got:
			t.Logf("Lock %d waited %v", i, waited)
		case <-time.After(limit):
			t.Fatalf("Lock %d still waits after %v behind a goroutine locking in a loop", i, limit)
		}
	}
}

// sleeper has a goroutine Lock m, which the caller holds, and returns once
// it has registered to sleep; the channel is closed when it holds m.
func sleeper(t *testing.T, m *Mutex) <-chan struct{} {
	got := make(chan struct{})
	go func() {
		m.Lock()
		close(got)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !m.Contended() {
		if time.Now().After(deadline) {
			t.Fatal("the second Lock never registered to sleep")
		}
		time.Sleep(10 * time.Microsecond)
	}
	return got
}

// sink keeps the benchmarks' counters alive.
var sink int

// BenchmarkUncontended is one Lock and Unlock with nobody else around, the
// case of nearly every Rent and Return. The two locks have a loop each, not
// one generic or interface-typed body, so that both run inlined, as they do
// in the Shuffler, not through an indirect call.
func BenchmarkUncontended(b *testing.B) {
	b.Run("lock=memshuffle", func(b *testing.B) {
		var m Mutex
		n := 0
		for b.Loop() {
			m.Lock()
			n++
			m.Unlock()
		}
		sink = n
	})
	b.Run("lock=sync.Mutex", func(b *testing.B) {
		var m sync.Mutex
		n := 0
		for b.Loop() {
			m.Lock()
			n++
			m.Unlock()
		}
		sink = n
	})
}

// BenchmarkContended has GOMAXPROCS goroutines take one lock for a short
// critical section, as the goroutines of a Shuffler do for entries of one
// shard.
func BenchmarkContended(b *testing.B) {
	b.Run("lock=memshuffle", func(b *testing.B) {
		var m Mutex
		var n int
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.Lock()
				n++
				m.Unlock()
			}
		})
		sink = n
	})
	b.Run("lock=sync.Mutex", func(b *testing.B) {
		var m sync.Mutex
		var n int
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.Lock()
				n++
				m.Unlock()
			}
		})
		sink = n
	})
}

// TestLostWakeupRecovered loses a wake-up on purpose: the lock is let go
// of the way a release that leaves no token would, with nothing in wake or
// handoff, while a goroutine sleeps on it. The sleeper must still get the
// lock, within a few rechecks. Without them it slept for good, as sleepers
// on shard locks did under load. Letting go behind Unlock's back, rather
// than through it, keeps the test off the handoff path that a sleeper
// starving by then would take, and keeps a test hook out of Unlock.
func TestLostWakeupRecovered(t *testing.T) {
	for round := range 20 {
		var m Mutex
		m.Lock()
		got := make(chan struct{})
		go func() {
			m.Lock()
			close(got)
			m.Unlock()
		}()
		for !m.Contended() {
			time.Sleep(100 * time.Microsecond)
		}
		m.state.Store(0)
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: a sleeper whose wake-up was lost never got the free lock", round)
		}
	}
}

// TestWokenSleeperSeesRelease is the store-buffering litmus test of a
// release racing a woken sleeper: the lock is held, a wake token waits in
// the channel, and one sleeper is counted. One goroutine takes the token
// and tries the lock, as a woken sleeper does, while the holder calls
// Unlock. Either the sleeper's CAS sees the release, or the holder's
// signal sees the token gone and leaves another. Without the fence in
// release, the holder's plain store could still sit in its store buffer
// while its signal read the channel as full: the CAS failed, the token was
// gone, the lock was free, and the sleeper would park with nothing to wake
// it. That happened 1 to 19 times in 4 million rounds here; the rounds
// below find it in most runs without the fence.
func TestWokenSleeperSeesRelease(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs running at once")
	}
	rounds := int64(4 << 20)
	if testing.Short() {
		rounds = 1 << 20
	}
	var m Mutex
	m.once.Do(func() {
		m.wake = make(chan struct{}, 1)
		m.handoff = make(chan struct{}, 1)
	})
	m.waiting.Store(1) // the sleeper: Unlock must signal
	var start, done atomic.Int64
	var won atomic.Bool
	go func() {
		for i := int64(1); i <= rounds; i++ {
			for s := start.Load(); s < i; s = start.Load() {
				if s < 0 { // the holder ran out of time
					return
				}
			}
			<-m.wake
			won.Store(m.state.CompareAndSwap(0, 1))
			done.Store(i)
		}
	}()
	lost := 0
	end, i := roundsEnd(), int64(1)
	for ; i <= rounds && !end(i); i++ {
		m.state.Store(1)
		m.wake <- struct{}{}
		start.Store(i)
		m.Unlock()
		for done.Load() < i {
		}
		if !won.Load() && m.state.Load() == 0 && len(m.wake) == 0 {
			lost++
		}
		select { // the token the holder left, if the CAS lost the race
		case <-m.wake:
		default:
		}
	}
	start.Store(-1)
	if lost > 0 {
		t.Errorf("%d of %d rounds lost the wake-up (asymmetric %v)", lost, i-1, asymmetric)
	}
	t.Logf("%d rounds of %d", i-1, rounds)
}

// BenchmarkReleaseWake times release on the path that wakes a sleeper,
// fence included, after a store that takes the lock: what a holder pays
// at Unlock, besides the wake channel's send, when someone sleeps.
func BenchmarkReleaseWake(b *testing.B) {
	var m Mutex
	m.waiting.Store(1)
	for b.Loop() {
		m.state.Store(1)
		release(&m)
	}
}
