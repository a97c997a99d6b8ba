package memshuffle

import (
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// TestRotationFlightPurgingLogger: a logger may Purge (WithKeyRotation's
// doc, the outbox's comment). The rotation flushed the outbox after
// planBatch had put a large entry in flight but before rekeyInFlight landed
// it: a Purge from that logger drained the shard and waited for ever for a
// flight only the goroutine it ran on could land.
// Any event another goroutine queued (a refused arena lock, a tamper) in the
// window triggers it; the hook queues one deterministically.
func TestRotationFlightPurgingLogger(t *testing.T) {
	var sp atomic.Pointer[Shuffler]
	logger, purged := purgingLogger(&sp, "flight-trigger")
	s, err := New(WithShards(1), WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	sp.Store(s)
	if _, err := Alloc[byte](s, flightSize); err != nil {
		t.Fatal(err)
	}
	beforeRotationSwitch = func() { s.logLater(slog.LevelWarn, "flight-trigger") }
	t.Cleanup(func() { beforeRotationSwitch = nil })
	rotated := started(func() error { return s.RotateKey(nil, nil) })
	if err := errWithin(t, purged, "Purge from the logger, called by the rotation with a large entry in flight, did not return"); err != nil {
		t.Fatal(err)
	}
	<-rotated
	// Purged, the Shuffler still holds its own region, locked, until
	// Close: left open, it took that much of the lock limit from the
	// tests after it.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// The scheduled form: the same Purge from WithKeyRotation's logger, which
// its doc allows, hangs, and Close, which waits for the rotation's
// goroutine, hangs behind it.
func TestScheduledRotationFlightPurgingLogger(t *testing.T) {
	// The rotation's goroutine starts in New, and its first rotations may
	// come before the large entry exists, or before New has returned: the
	// hook waits for the test to publish the Shuffler after the Alloc.
	var sp atomic.Pointer[Shuffler]
	logger, purged := purgingLogger(&sp, "flight-trigger")
	var once bool
	beforeRotationSwitch = func() {
		if sh := sp.Load(); sh != nil && !once {
			once = true
			sh.logLater(slog.LevelWarn, "flight-trigger")
		}
	}
	t.Cleanup(func() { beforeRotationSwitch = nil })
	s, err := New(WithShards(1), WithLogger(logger), WithKeyRotation(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Alloc[byte](s, flightSize); err != nil {
		t.Fatal(err)
	}
	sp.Store(s)
	if err := errWithin(t, purged, "Purge from the scheduled rotation's logger, with a large entry in flight, did not return"); err != nil {
		t.Fatal(err)
	}
	closed := started(s.Close)
	if err := errWithin(t, closed, "Close after the logger's Purge did not return"); err != nil {
		t.Fatal(err)
	}
}
