package memshuffle

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// purgingLogger returns a logger that purges the Shuffler s holds when a
// record holding event is logged, as an incident handler does, and a
// channel that gets Purge's result. s is atomic because a rotation's or a
// tracker's goroutine may log while the test is still storing it.
func purgingLogger(s *atomic.Pointer[Shuffler], event string) (*slog.Logger, <-chan error) {
	purged := make(chan error, 1)
	return slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		// Not before New has returned: a process already at its memory-lock
		// limit has New itself log a refused lock, which Purge on the nil
		// Shuffler would answer as if the event under test had come.
		if sh := s.Load(); sh != nil && strings.Contains(string(p), event) {
			select {
			case purged <- sh.Purge():
			default:
			}
		}
		return len(p), nil
	}), nil)), purged
}

// tamperWith changes a byte of h's ciphertext at rest, through a slice kept
// past its Return. It does so holding the shard locks: a scheduled
// rotation (TestPurgeFromRotationTamperLogger's, every millisecond) has an
// entry of an authenticated mode in the clear, in place, under its shard
// lock, and a byte flipped then would be sealed under the new key, the
// tampering gone.
func tamperWith(t *testing.T, s *Shuffler, h Handle) {
	t.Helper()
	b, err := RentSlice[byte](s, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Return(h); err != nil {
		t.Fatal(err)
	}
	s.lockAll()
	b[0] ^= 1
	s.unlockAll()
}

// TestPurgeFromTamperLogger: an entry that fails authentication is the
// event a handler is most likely to answer with Purge, yet WithLogger
// allows Purge only from a long-rent event. The event is logged while the
// entry's shard is locked, and Purge waits for that lock: the Rent that
// found the tampering never returns, and the shard stays locked for good.
// (The test leaks that goroutine when it fails, and so does not Close the
// Shuffler.)
func TestPurgeFromTamperLogger(t *testing.T) {
	var sp atomic.Pointer[Shuffler]
	logger, purged := purgingLogger(&sp, "failed authentication")
	s, err := New(WithCipher(AES256GCM), WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	sp.Store(s)
	h, err := Alloc[byte](s, 32)
	if err != nil {
		t.Fatal(err)
	}
	tamperWith(t, s, h)
	rented := make(chan error, 1)
	go func() {
		_, err := RentSlice[byte](s, h)
		rented <- err
	}()
	if err := errWithin(t, rented, "Rent of a tampered entry did not return: its logger purges"); !errors.Is(err, ErrTampered) {
		t.Fatalf("Rent of a tampered entry: %v, want ErrTampered", err)
	}
	if err := errWithin(t, purged, "Purge from the tamper event did not return"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPurgeFromRotationTamperLogger: WithKeyRotation says a logger the
// scheduled rotation calls may Purge. In an authenticated mode the
// rotation opens every resting entry, and reports a tampered one while
// holding its shard: a logger that purges on that event leaves the
// rotation, and the shard, stuck, and Close waits for the rotation for
// ever.
func TestPurgeFromRotationTamperLogger(t *testing.T) {
	var sp atomic.Pointer[Shuffler]
	logger, purged := purgingLogger(&sp, "failed authentication")
	s, err := New(WithCipher(AES256GCM), WithLogger(logger), WithKeyRotation(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	sp.Store(s)
	h, err := Alloc[byte](s, 32)
	if err != nil {
		t.Fatal(err)
	}
	tamperWith(t, s, h)
	if err := errWithin(t, purged, "Purge from the scheduled rotation's tamper event did not return"); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	if err := errWithin(t, closed, "Close after the rotation's logger purged did not return"); err != nil {
		t.Fatal(err)
	}
}

// TestPurgeFromLockFailureLogger: the refused lock of a new arena is
// raised while Alloc holds the shard lock; a logger that purges on it
// must not wait for that lock.
func TestPurgeFromLockFailureLogger(t *testing.T) {
	var sp atomic.Pointer[Shuffler]
	logger, purged := purgingLogger(&sp, "memory not locked")
	s, err := New(WithLogger(logger), WithLockMode(LockBestEffort))
	if err != nil {
		t.Fatal(err)
	}
	sp.Store(s)
	if s.Stats().LockFailures > 0 {
		t.Skip("the process is at its memory-lock limit: New's own lock was refused, and the one \"memory not locked\" event a Shuffler logs went out before the test could raise it")
	}
	refuse(t, osmem.OpLock)
	allocated := make(chan error, 1)
	go func() {
		// Larger than any arena mapped so far: a new one is locked.
		_, err := Alloc[byte](s, 1<<20)
		allocated <- err
	}()
	if err := errWithin(t, allocated, "Alloc whose refused lock a purging logger saw did not return"); err != nil {
		t.Fatal(err)
	}
	osmem.SetFault(nil)
	if err := errWithin(t, purged, "Purge from the lock-failure event did not return"); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Entries != 0 {
		t.Fatalf("after Purge: %d entries", st.Entries)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// panickyHandler is a slog.Handler whose Handle panics.
type panickyHandler struct{ slog.Handler }

func (panickyHandler) Handle(context.Context, slog.Record) error { panic("log sink down") }

// TestPanickingLoggerDropsEvent: a handler that panics loses its event
// and nothing else. Before, the tamper event's panic came out of the Rent
// that found the tampering, and the long-rent event's out of the tracking
// goroutine, which ended the process.
func TestPanickingLoggerDropsEvent(t *testing.T) {
	logger := slog.New(panickyHandler{slog.NewTextHandler(io.Discard, nil)})
	s := newTest(t, WithCipher(AES256GCM), WithLogger(logger), WithRentTracking(time.Millisecond))
	h, err := Alloc[byte](s, 32)
	if err != nil {
		t.Fatal(err)
	}
	tamperWith(t, s, h)
	if _, err := RentSlice[byte](s, h); !errors.Is(err, ErrTampered) {
		t.Fatalf("Rent of a tampered entry with a panicking logger: %v, want ErrTampered", err)
	}
	// A rent held past the threshold: the tracker's event panics too.
	g, err := Alloc[byte](s, 32)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RentSlice[byte](s, g); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().LongRentsSeen == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s.Stats().LongRentsSeen == 0 {
		t.Fatal("the long rent was never reported")
	}
	if err := s.Return(g); err != nil {
		t.Fatal(err)
	}
}
