package memshuffle

import (
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// recordingLogger returns a logger and a function reporting how many
// records holding event it has seen so far.
func recordingLogger(event string) (*slog.Logger, func() int) {
	var mu sync.Mutex
	n := 0
	l := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		if strings.Contains(string(p), event) {
			mu.Lock()
			n++
			mu.Unlock()
		}
		return len(p), nil
	}), nil))
	return l, func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// TestEventReachesLoggerBeforeCallReturns: WithLogger promises that an
// event raised under a shard lock reaches the logger once the call that
// raised it lets go of the lock. Calls that succeed raise events too: a
// refused lock of memory mapped on the way (a new arena for a moving
// Return, for a Borrow function's return, or for Free's compaction) is no
// error under LockBestEffort. Each
// case must have logged the event by the time the call returns.
func TestEventReachesLoggerBeforeCallReturns(t *testing.T) {
	const event = "memory not locked"
	cases := []struct {
		name string
		opts []Option
		// setup runs before locks are refused, call after.
		setup func(t *testing.T, s *Shuffler) []Handle
		call  func(s *Shuffler, hs []Handle) error
	}{
		{
			name: "Borrow's return moves the entry to a new arena",
			setup: func(t *testing.T, s *Shuffler) []Handle {
				// Larger than an arena: it fills one of its own, and
				// its move needs a new one.
				hs := allocN(t, s, 1, 1<<20)
				s.SetShuffleOnBorrowReturn(true)
				return hs
			},
			call: func(s *Shuffler, hs []Handle) error {
				return Borrow(s, hs[0], func(p *[64]byte) error { return nil })
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logger, seen := recordingLogger(event)
			s, err := New(append([]Option{WithShards(1), WithLogger(logger), WithLockMode(LockBestEffort)}, c.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			hs := c.setup(t, s)
			if s.Stats().LockFailures > 0 {
				t.Skip("the process reached its memory-lock limit in the setup: the one \"memory not locked\" event a Shuffler logs went out before the call")
			}
			if n := seen(); n != 0 {
				t.Fatalf("%d events before any lock was refused", n)
			}
			refuse(t, osmem.OpLock)
			if err := c.call(s, hs); err != nil {
				t.Fatal(err)
			}
			if s.Stats().LockFailures == 0 {
				t.Fatal("the call refused no lock; the test does not test")
			}
			if n := seen(); n != 1 {
				t.Fatalf("the call returned with the refused lock logged %d times, want 1", n)
			}
		})
	}
}

func allocN(t *testing.T, s *Shuffler, n, size int) []Handle {
	t.Helper()
	hs := make([]Handle, n)
	for i := range hs {
		h, err := Alloc[byte](s, size)
		if err != nil {
			t.Fatal(err)
		}
		hs[i] = h
	}
	return hs
}

// TestFreeCompactionEventReachesLogger is
// TestEventReachesLoggerBeforeCallReturns for Free, whose compaction step
// maps a new arena when an arena it drains holds an entry too large for
// the holes elsewhere.
func TestFreeCompactionEventReachesLogger(t *testing.T) {
	logger, seen := recordingLogger("memory not locked")
	s, err := New(WithShards(1), WithLogger(logger), WithLockMode(LockBestEffort), WithArenaSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Three full arenas: the first starts with an entry twice the others'
	// size, which no hole a single Free leaves can take.
	hs := allocN(t, s, 1, 6<<10)
	for s.Stats().Arenas < 2 {
		hs = append(hs, allocN(t, s, 1, 3<<10)...)
	}
	first := len(hs) - 1 // the entries of the first arena
	for s.Stats().Arenas < 3 {
		hs = append(hs, allocN(t, s, 1, 3<<10)...)
	}
	second := len(hs) - 1
	for len(hs) < 2*second-first {
		hs = append(hs, allocN(t, s, 1, 3<<10)...)
	}
	refuse(t, osmem.OpLock)
	// Holes of one entry in the second arena, then the first drained but
	// for its large entry: compaction needs a new arena for it.
	var frees []Handle
	for i := first + 1; i < second; i += 2 {
		frees = append(frees, hs[i])
	}
	frees = append(frees, hs[1:first]...)
	for i, h := range frees {
		if err := s.Free(h); err != nil {
			t.Fatal(err)
		}
		if n := s.Stats().LockFailures; n > 0 {
			if seen() != 1 {
				t.Fatalf("Free %d returned with a refused lock counted and the event logged %d times, want 1", i, seen())
			}
			return
		}
	}
	t.Fatal("no Free refused a lock; the test does not test")
}
