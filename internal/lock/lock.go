// Package lock is the mutex that guards each shard of a Shuffler.
//
// Every Rent and every Return takes a shard's lock and lets go of it, and
// on amd64 each read-modify-write instruction with a lock prefix costs
// about as much as encrypting 16 bytes: sync.Mutex's Unlock is one of them
// (an atomic add, which tells it whether anyone sleeps on the mutex), and
// so is an atomic store, which Go makes sequentially consistent with XCHG.
// Mutex lets go with a plain store instead, which x86 already orders after
// every access of the critical section, and reads the count of sleepers
// with a plain load.
//
// The hardware may still make that load before the store is seen, so a
// goroutine could go to sleep on a lock that was just let go of by a holder
// that saw no sleeper. A goroutine about to sleep closes that window with
// membarrier(2): after counting itself as waiting it forces a full memory
// barrier on every thread of the process, so any holder has either made
// its store visible, which the sleeper then sees, or will see the count.
// This is the asymmetric barrier of userspace RCU and Folly: the cost moves
// from every unlock to the rare lock that has to sleep. Where membarrier
// is missing, on other systems, other architectures (arm64's atomic store
// is already cheap and ordered) and under the race detector, Unlock uses an
// atomic store. Where it is refused after Enable (a seccomp filter
// installed later), a sleeper cannot close the window and tries the lock
// again every pollRefused besides.
package lock

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Mutex is a mutual exclusion lock. The zero Mutex is unlocked. It must
// not be copied after first use.
//
// Waiters are not served in order: one woken competes with any goroutine
// that calls Lock at that moment. But one that has waited starveAfter is
// handed the lock by the next Unlock, as in sync.Mutex's starvation mode,
// so that a goroutine which takes the lock in a loop, or is descheduled
// while it holds it, cannot keep a waiter out for good. Unlike sync.Mutex,
// Unlock of an unlocked Mutex is not detected.
type Mutex struct {
	state    atomic.Uint32 // 1 while held, and while handed to a sleeper
	waiting  atomic.Int32  // goroutines registered to sleep in lockSlow
	sleeping atomic.Int32  // of those, the ones past their barrier, for Contended
	starving atomic.Int32  // of those, the ones that have waited starveAfter

	once    sync.Once
	wake    chan struct{} // a token for a sleeper; made by the first
	handoff chan struct{} // the lock itself, for a sleeper to take
}

// What release did, for Unlock to finish: let go with nobody asleep, let
// go with a sleeper to wake (release's assembly sets these two as a
// comparison's result), or kept the lock held for a sleeper that starves.
const (
	released = 0
	wakeOne  = 1
	handOff  = 2
)

// Lock locks m, waiting until it is free.
func (m *Mutex) Lock() {
	if !m.state.CompareAndSwap(0, 1) {
		m.lockSlow()
	}
}

// TryLock locks m if it is free, and reports whether it did.
func (m *Mutex) TryLock() bool { return m.state.CompareAndSwap(0, 1) }

// Unlock lets go of m, which must be locked, and wakes a sleeper if there
// is one; if a sleeper starves, it hands m to a sleeper instead.
func (m *Mutex) Unlock() {
	switch release(m) {
	case wakeOne:
		m.signal()
	case handOff:
		// Never blocks: a token in handoff is the lock, which no one holds
		// to let go of again until a sleeper has taken it out.
		m.handoff <- struct{}{}
	}
}

// Contended reports whether a goroutine sleeps in Lock, or is about to:
// one that has just been woken counts until it holds the lock. One still in
// its barrier's system call does not count yet: a holder that yielded to
// it would only run again itself, or, on one P, go on before it.
func (m *Mutex) Contended() bool { return m.sleeping.Load() > 0 }

// spins is how many times lockSlow looks at the lock before it sleeps, on
// a machine with more than one CPU: a holder running on another CPU lets go
// within a few hundred nanoseconds, far less than a sleep and a wake cost.
const spins = 100

// starveAfter is how long a sleeper competes for the lock before it asks to
// be handed it, sync.Mutex's threshold. A woken sleeper tries the lock once
// and sleeps again if it lost, so without a handoff it could lose every
// time: to a holder descheduled while it holds the lock, or on one P to a
// goroutine that locks in a loop and lets the sleeper run only when
// preempted, which is almost always inside the critical section.
const starveAfter = time.Millisecond

// pollRefused is how long a sleeper whose heavyBarrier was refused sleeps
// before it tries the lock again, token or not: a wake-up lost to the
// missing barrier costs that much, not the rest of the program's life.
const pollRefused = time.Millisecond

// recheck is how long an ordered sleeper waits for a token before it tries
// the lock again anyway. As user nobody at GOMAXPROCS=8 on two CPUs, with
// Stats, rotation and background shuffling racing, a sleeper on a shard
// lock slept on the free lock until a watchdog ended the run, 3 times in
// 78 runs: a woken sleeper's failed CAS raced a release whose store was
// still buffered while its signal saw the old token (see release's fence,
// and TestWokenSleeperSeesRelease). That is fixed; the recheck stays, so
// that a wake-up lost to anything else costs a sleeper this much, not the
// program's life. A sleeper rarely waits this long: a lock is held for
// microseconds, at most a batch.
var recheck = 2 * time.Millisecond // a variable for tests

var multicore = runtime.NumCPU() > 1

// lockSlow is Lock after its first attempt failed.
func (m *Mutex) lockSlow() {
	// With one P the holder cannot run while this goroutine spins. The
	// call takes the scheduler's lock, which is cheap next to the spin.
	if multicore && runtime.GOMAXPROCS(0) > 1 {
		for range spins {
			if m.state.Load() == 0 && m.state.CompareAndSwap(0, 1) {
				return
			}
			pause()
		}
	}
	m.once.Do(func() {
		m.wake = make(chan struct{}, 1)
		m.handoff = make(chan struct{}, 1)
	})
	m.waiting.Add(1)
	ordered := heavyBarrier()
	since := time.Now()
	starving := false
	// From here on every holder that lets go either sees the count and
	// leaves a token, or let go before this attempt could miss it. A holder
	// that sees starving, counted before this sleeper's next sleep, keeps
	// the lock held and hands it over; one that read it too early lets go
	// and leaves a token, as before. Without the barrier the holder of the
	// moment may have let go unseen, leaving no token: the sleeper looks
	// again every pollRefused. With it, every recheck.
	asleep := false
	var poll *time.Timer
	interval := recheck
	if !ordered {
		interval = pollRefused
	}
	for !m.state.CompareAndSwap(0, 1) {
		if !asleep {
			asleep = true
			m.sleeping.Add(1)
		}
		if !starving && time.Since(since) >= starveAfter {
			starving = true
			m.starving.Add(1)
		}
		if poll == nil {
			poll = time.NewTimer(interval)
		} else {
			poll.Reset(interval)
		}
		select {
		case <-m.wake:
			continue
		case <-poll.C:
			continue
		case <-m.handoff:
		}
		break // handed the lock: m.state is still 1, now for this goroutine
	}
	if poll != nil {
		poll.Stop()
	}
	if starving {
		m.starving.Add(-1)
	}
	if asleep {
		m.sleeping.Add(-1)
	}
	m.waiting.Add(-1)
}

// signal leaves a wake token unless one is already waiting to be taken: a
// woken goroutine that then loses the lock to another sleeps again, and
// that one's Unlock leaves the next token.
func (m *Mutex) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}
