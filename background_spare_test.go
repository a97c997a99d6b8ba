package memshuffle

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestBackgroundStopsWhileFaultingSpare: a background shuffler told to
// stop while it faults in a spare stops there, without finishing (and
// locking) a spare no step will use, and leaves nothing mapped: faulting
// in a 16 MiB spare between rests takes tens of milliseconds, which stop,
// Close and a cancelled context would otherwise wait for. Secret memory
// too, which is counted from the moment it is mapped.
func TestBackgroundStopsWhileFaultingSpare(t *testing.T) {
	for _, secret := range []bool{false, true} {
		t.Run(fmt.Sprintf("secret=%v", secret), func(t *testing.T) {
			stopWhileFaultingSpare(t, secret)
		})
	}
}

func stopWhileFaultingSpare(t *testing.T, secret bool) {
	opts := []Option{WithShards(1), WithArenaSize(16 << 20)}
	if secret {
		opts = append(opts, WithSecretMemory())
	}
	s := newOrSkip(t, opts...)
	for range 4 {
		if _, err := Alloc[byte](s, 64<<10); errors.Is(err, ErrLockFailed) {
			t.Skip(err)
		} else if err != nil {
			t.Fatal(err)
		}
	}
	before := s.Stats()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelled atomic.Bool
	var mapsAfter, locksAfter atomic.Int32
	osmem.SetFault(func(op osmem.Op) error {
		switch {
		case op == osmem.OpMap && !cancelled.Load():
			// The first mapping of the cycle is its first spare's: stop
			// the shuffler as the spare is being mapped.
			cancelled.Store(true)
			cancel()
		case op == osmem.OpMap:
			mapsAfter.Add(1)
		case op == osmem.OpLock && cancelled.Load():
			locksAfter.Add(1)
		}
		return nil
	})
	t.Cleanup(func() { osmem.SetFault(nil) })
	stop, err := s.StartBackgroundShuffle(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a spare", cancelled.Load)
	stop()
	osmem.SetFault(nil)
	if n, m := locksAfter.Load(), mapsAfter.Load(); n != 0 || m != 0 {
		t.Errorf("after it was stopped the background shuffler locked %d regions and mapped %d more", n, m)
	}
	st := s.Stats()
	if al, au := s.aux.Locked(), s.aux.Unlocked(); al != 0 || au != 0 {
		t.Errorf("spare left counted: %d locked and %d unlocked bytes", al, au)
	}
	if st.LockedBytes != before.LockedBytes || st.UnlockedBytes != before.UnlockedBytes {
		t.Errorf("locked %d→%d, unlocked %d→%d bytes", before.LockedBytes, st.LockedBytes, before.UnlockedBytes, st.UnlockedBytes)
	}
}

// newOrSkip is newTest that skips where the system has no secret memory or
// will not lock what the options ask for.
func newOrSkip(t *testing.T, opts ...Option) *Shuffler {
	t.Helper()
	s, err := New(opts...)
	if errors.Is(err, ErrNoSecretMemory) || errors.Is(err, ErrLockFailed) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	checkAtCleanup(t, s)
	return s
}

// skipLockFailed skips where LockStrict ran into RLIMIT_MEMLOCK part-way
// through a workload the test builds, which New alone does not foresee.
func skipLockFailed(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, ErrLockFailed) {
		t.Skipf("the memory-lock limit cannot hold the test's workload: %v", err)
	}
}

// TestStepMovesOneLargeEntry: a step of the background shuffler moves at
// most stepBytes while it holds the shard lock, so one entry of 64 KiB at
// a time: the lock hold, which a Rent of the shard waits out, is the copy
// and wipe of one such entry.
func TestStepMovesOneLargeEntry(t *testing.T) {
	s := newTest(t, WithShards(1))
	const size = 64 << 10
	for range 48 {
		if _, err := Alloc[byte](s, size); err != nil {
			t.Fatal(err)
		}
	}
	var last, most uint64
	var steps int
	afterStep = func(time.Duration) {
		// Called by the background goroutine after each step, in order.
		moved := s.tally.bytesMoved.Load()
		most = max(most, moved-last)
		last = moved
		steps++
	}
	t.Cleanup(func() { afterStep = nil })
	oneCycle(t, s)
	if last < 48*size {
		t.Fatalf("a cycle moved %d bytes in %d steps, want at least %d", last, steps, 48*size)
	}
	if most > size {
		t.Errorf("a step moved %d bytes under one lock hold, want at most %d", most, size)
	}
}

// TestSpareLockRefused: where the system refuses to lock a spare, a
// LockBestEffort Shuffler uses it unlocked and counts the refusal, and
// every count still matches what is mapped; a LockStrict one uses no
// unlocked spare, and its entries stay where they are, readable.
func TestSpareLockRefused(t *testing.T) {
	for _, c := range []struct {
		name string
		mode LockMode
	}{{"besteffort", LockBestEffort}, {"strict", LockStrict}} {
		mode := c.mode
		t.Run(c.name, func(t *testing.T) {
			s := newOrSkip(t, WithShards(1), WithArenaSize(256<<10), WithLockMode(mode))
			want := map[Handle]byte{}
			for i := range 64 {
				h, err := Alloc[byte](s, 16<<10)
				if err != nil {
					t.Fatal(err)
				}
				b, err := RentSlice[byte](s, h)
				if err != nil {
					t.Fatal(err)
				}
				b[0] = byte(i + 1)
				if err := s.Return(h); err != nil {
					t.Fatal(err)
				}
				want[h] = byte(i + 1)
			}
			before := s.Stats()
			refuse(t, osmem.OpLock)
			oneCycle(t, s)
			osmem.SetFault(nil)
			mustCheck(t, s)
			st := s.Stats()
			if st.LockFailures == before.LockFailures {
				t.Errorf("no lock failure counted")
			}
			if mode == LockStrict && st.UnlockedBytes != 0 {
				t.Errorf("LockStrict: %d bytes unlocked", st.UnlockedBytes)
			}
			if mode == LockBestEffort && st.UnlockedBytes == 0 {
				t.Errorf("LockBestEffort: no unlocked spare in use")
			}
			for h, v := range want {
				b, err := ViewSlice[byte](s, h)
				if err != nil {
					t.Fatal(err)
				}
				if b[0] != v {
					t.Errorf("entry changed: %d, want %d", b[0], v)
				}
				s.ReturnView(h)
			}
		})
	}
}
