package memshuffle

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestUnlockYield: a goroutine parked on a shard lock runs as soon as the
// background lets go of the lock, before the background goes on; one that
// is merely runnable runs after it, as after a plain Unlock. On one P the
// order is all but fixed, and the controls show the other order: without
// the yield the holder goes on before the waiter, with runtime.Gosched
// after every Unlock the runnable goroutine goes first. All but: one
// scheduling round in 61 takes a goroutine from the global run queue
// first, which a yield has just put the holder on, so each case runs
// trials times and must show its order in all but a few. The lock counts
// as contended while, and only while, a goroutine waits for it.
func TestUnlockYield(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s := newTest(t, WithShards(1))
	sh := &s.shards[0]
	for _, c := range []struct {
		name       string
		release    func()
		waits      bool // the other goroutine waits for the lock, or only runs
		otherFirst bool
	}{
		{"Unlock/waiter", sh.mu.Unlock, true, false},
		{"unlockYield/waiter", sh.unlockYield, true, true},
		{"unlockYield/runnable", sh.unlockYield, false, false},
		{"Unlock+Gosched/runnable", func() { sh.mu.Unlock(); runtime.Gosched() }, false, true},
	} {
		const trials = 20
		otherFirst := 0
		for range trials {
			if unlockYieldTrial(t, sh, c.name, c.release, c.waits) {
				otherFirst++
			}
		}
		if want := map[bool]int{true: trials, false: 0}[c.otherFirst]; otherFirst < want-2 || otherFirst > want+2 {
			t.Errorf("%s: the other goroutine ran first in %d of %d trials, want %d", c.name, otherFirst, trials, want)
		}
	}
}

// unlockYieldTrial is one trial of TestUnlockYield: it reports whether the
// other goroutine ran first.
func unlockYieldTrial(t *testing.T, sh *shard, name string, release func(), waits bool) bool {
	var seq, other, holder atomic.Int64
	var started atomic.Bool
	done := make(chan struct{})
	sh.mu.Lock()
	if sh.mu.Contended() {
		t.Fatalf("%s: contended with no goroutine waiting", name)
	}
	go func() {
		defer close(done)
		started.Store(true)
		if waits {
			sh.mu.Lock() // parks: on one P nothing else runs until it does
			defer sh.mu.Unlock()
		}
		other.Store(seq.Add(1))
	}()
	// On one P the goroutine runs only when this one yields: a waiter
	// is let run into Lock, a runnable one is not let run at all.
	for waits && (!started.Load() || !sh.mu.Contended()) {
		runtime.Gosched()
	}
	release()
	holder.Store(seq.Add(1))
	<-done
	if sh.mu.Contended() {
		t.Errorf("%s: contended after the waiter took the lock and let it go", name)
	}
	return other.Load() < holder.Load()
}

// TestPacerRests: a burst of pacerBurst or more is followed by a sleep at
// least as long (up to pacerMax) and a new burst, a shorter one by none,
// and a nil pacer never rests. The pacer reads a clock of the test's, so
// the bursts are exactly as long as the test says.
func TestPacerRests(t *testing.T) {
	var none *pacer
	none.rest()

	now := time.Unix(1e9, 0)
	p := pacer{since: now.Add(-pacerBurst / 2), clock: func() time.Time { return now }}
	p.rest()
	if p.rests != 0 || !p.since.Equal(now.Add(-pacerBurst/2)) {
		t.Errorf("rest after a burst shorter than %v rested %d times", pacerBurst, p.rests)
	}

	const worked = 2 * time.Millisecond
	p.since = now.Add(-worked)
	start := time.Now()
	p.rest()
	if p.rests != 1 || !p.since.Equal(now) {
		t.Errorf("rest after a %v burst: %d rests, burst from %v", worked, p.rests, p.since)
	}
	// Windows' clock can lag the sleep by a millisecond or more.
	if slept := time.Since(start); slept < worked && runtime.GOOS != "windows" {
		t.Errorf("rest after a %v burst slept %v", worked, slept)
	}
}

// TestPacerWaited: a wait between runs counts as rest for its length
// only. One as long as the burst so far needs (the burst, or pacerMax for
// a longer one) starts a new burst; a shorter one leaves the work on
// either side of it in one burst.
func TestPacerWaited(t *testing.T) {
	var none *pacer
	none.waited(time.Second)

	now := time.Unix(1e9, 0)
	for _, c := range []struct {
		name          string
		worked, wait  time.Duration
		wantWorkAfter time.Duration // now - since after waited
	}{
		{"long wait", 80 * time.Microsecond, time.Millisecond, 0},
		{"wait as long as the work", 80 * time.Microsecond, 80 * time.Microsecond, 0},
		{"tiny wait", 80 * time.Microsecond, time.Microsecond, 80 * time.Microsecond},
		{"no work", 0, time.Microsecond, 0},
		{"wait of pacerMax after more work", 3 * pacerMax, pacerMax, 0},
		{"short wait after more work than pacerMax", 3 * pacerMax, pacerMax / 2, 3 * pacerMax},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := pacer{since: now.Add(-c.worked - c.wait), clock: func() time.Time { return now }}
			p.waited(c.wait)
			if got := now.Sub(p.since); got != c.wantWorkAfter {
				t.Errorf("burst after %v of work and a %v wait: %v, want %v", c.worked, c.wait, got, c.wantWorkAfter)
			}
		})
	}
}

// TestMapSpare: a spare is zero, locked as the Shuffler's lock mode asks
// and counted while mapped; a refused lock is an error under LockStrict and
// a counted failure otherwise, with nothing left mapped or counted wrong
// (the checker runs at cleanup).
func TestMapSpare(t *testing.T) {
	const n = 3 << 20
	for _, c := range []struct {
		name    string
		mode    LockMode
		refuse  bool
		wantErr error
		locked  bool
	}{
		{"best-effort", LockBestEffort, false, nil, true},
		{"none", LockNone, false, nil, false},
		{"best-effort/refused", LockBestEffort, true, nil, false},
		{"strict/refused", LockStrict, true, ErrLockFailed, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.locked && osmem.LockLimit() >= 0 && osmem.LockLimit() < 2*n {
				t.Skipf("RLIMIT_MEMLOCK %d leaves no room for a %d-byte spare", osmem.LockLimit(), n)
			}
			s := newOrSkip(t, WithLockMode(c.mode))
			before := s.Stats()
			if c.refuse {
				refuse(t, osmem.OpLock)
			}
			var pace pacer
			r, err := s.mapSpare(context.Background(), n, &pace)
			if !errors.Is(err, c.wantErr) || (err == nil) != (c.wantErr == nil) {
				t.Fatalf("mapSpare: %v, want %v", err, c.wantErr)
			}
			st := s.Stats()
			if err != nil {
				if r != nil || st.LockedBytes != before.LockedBytes || st.UnlockedBytes != before.UnlockedBytes {
					t.Fatalf("refused spare left %v mapped, locked %d→%d, unlocked %d→%d",
						r != nil, before.LockedBytes, st.LockedBytes, before.UnlockedBytes, st.UnlockedBytes)
				}
				return
			}
			if r.Locked != c.locked || len(r.Data) < n {
				t.Fatalf("spare of %d bytes, locked %v; want %d, locked %v", len(r.Data), r.Locked, n, c.locked)
			}
			grew := st.LockedBytes - before.LockedBytes
			if !c.locked {
				grew = st.UnlockedBytes - before.UnlockedBytes
			}
			if grew != int64(len(r.Data)) {
				t.Errorf("counted %d bytes for a %d-byte spare", grew, len(r.Data))
			}
			if c.refuse && st.LockFailures == before.LockFailures {
				t.Error("refused lock not counted in LockFailures")
			}
			for i, b := range r.Data {
				if b != 0 {
					t.Fatalf("spare byte %d is %d", i, b)
				}
			}
			if err := s.aux.Unmap(r); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRotationRestsUnlessCalled: a scheduled rotation rests between
// batches, but not while a RotateKey call waits for it or runs.
func TestRotationRestsUnlessCalled(t *testing.T) {
	for _, called := range []bool{false, true} {
		s := newTest(t, WithShards(1))
		for range 32 {
			if _, err := Alloc[byte](s, 32<<10); err != nil {
				t.Fatal(err)
			}
		}
		if called {
			s.rotator.calls.Add(1)
		}
		// A clock that moves a millisecond at every reading: every batch is
		// a burst worth a rest, however coarse the system's clock (on
		// Windows it can stand still across a whole batch).
		var ticks atomic.Int64
		pace := pacer{clock: func() time.Time {
			return time.Unix(0, ticks.Add(int64(time.Millisecond)))
		}}
		if err := s.rotateKey(context.Background(), nil, nil, &pace); err != nil {
			t.Fatal(err)
		}
		if rested := pace.rests > 0; rested == called {
			t.Errorf("RotateKey waiting %v: scheduled rotation rested %v", called, rested)
		}
	}
}
