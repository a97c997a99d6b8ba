package leakcheck

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/memshuffle/memshuffle"
)

// TestMain fails the run if any goroutine is left when the tests end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func busy(t *testing.T, s *memshuffle.Shuffler) {
	t.Helper()
	for range 200 {
		h, err := memshuffle.Alloc[byte](s, 64)
		if err != nil {
			t.Fatal(err)
		}
		memshuffle.Borrow(s, h, func(b *[64]byte) error { b[0] = 1; return nil })
	}
}

// Every goroutine-starting feature, stopped by Close.
func TestCloseStopsEverything(t *testing.T) {
	defer goleak.VerifyNone(t)
	s, err := memshuffle.New(
		memshuffle.WithBackgroundShuffle(0),
		memshuffle.WithRentTracking(5*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	busy(t, s)
	if _, err := s.StartBackgroundShuffle(context.Background(), 0); err == nil {
		t.Fatal("a second background shuffler started")
	}
	for s.Stats().BackgroundCycles < 2 {
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// The background shuffler stopped by its context, then by stop.
func TestBackgroundStoppedByContext(t *testing.T) {
	defer goleak.VerifyNone(t)
	s, err := memshuffle.New()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	busy(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	stop, err := s.StartBackgroundShuffle(ctx, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for s.Stats().BackgroundCycles < 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	stop()
	stop, err = s.StartBackgroundShuffle(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	stop()
}

// PurgeOnSignal's watcher ends with its stop function.
func TestPurgeOnSignalStops(t *testing.T) {
	defer goleak.VerifyNone(t)
	s, err := memshuffle.New()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stop := memshuffle.PurgeOnSignal(s)
	stop()
}

// Waiters blocked in RentContext are released by Close.
func TestWaitersReleasedByClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	s, err := memshuffle.New()
	if err != nil {
		t.Fatal(err)
	}
	h, _ := memshuffle.Create[uint64](s)
	memshuffle.Rent[uint64](s, h)
	done := make(chan error)
	for range 4 {
		go func() {
			_, err := memshuffle.RentContext[uint64](context.Background(), s, h)
			done <- err
		}()
	}
	time.Sleep(20 * time.Millisecond)
	s.Close()
	for range 4 {
		if err := <-done; err == nil {
			t.Fatal("waiter got the entry after Close")
		}
	}
}

// The scheduled key rotation of WithKeyRotation ends with Close: while it
// waits for its next turn (an hour away, so only Close can end it), after a
// Purge, and while rotations run back to back.
func TestKeyRotationStoppedByClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, c := range []struct {
		every time.Duration
		purge bool
	}{{time.Hour, false}, {time.Hour, true}, {time.Microsecond, false}, {time.Microsecond, true}} {
		s, err := memshuffle.New(memshuffle.WithKeyRotation(c.every))
		if err != nil {
			t.Fatal(err)
		}
		busy(t, s)
		for c.every < time.Second && s.Stats().KeyRotations < 3 {
			time.Sleep(time.Millisecond)
		}
		if c.purge {
			if err := s.Purge(); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
