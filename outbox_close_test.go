package memshuffle

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestPurgeFromBackgroundLoggerDuringClose: WithLogger allows Purge from
// any event, and the background shuffler hands the events it raised to the
// logger on its own goroutine. Close waited for that goroutine to end
// while it held the lock Purge takes: a logger that purged while Close ran,
// as an incident handler does at shutdown, left both waiting for ever.
// (The test leaks both goroutines when it fails.)
func TestPurgeFromBackgroundLoggerDuringClose(t *testing.T) {
	var s *Shuffler
	closed := make(chan error, 1)
	purged := make(chan error, 1)
	seen := make(chan error, 1)
	var once sync.Once
	var armed atomic.Bool
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		// s is nil while New runs, and New itself logs a refused lock when
		// the process is at its memory-lock limit already: only the
		// background shuffler's events count.
		if !armed.Load() || !strings.Contains(string(p), "memory not locked") {
			return len(p), nil
		}
		once.Do(func() {
			seen <- nil
			go func() { closed <- s.Close() }()
			// Purge once Close is under way, as an incident handler racing
			// the program's own shutdown does: once Close has marked the
			// Shuffler closed, or has had time to wait for this goroutine.
			for i := 0; i < 500 && !s.closed.Load(); i++ {
				time.Sleep(time.Millisecond)
			}
			purged <- s.Purge()
		})
		return len(p), nil
	}), nil))
	s, err := New(WithShards(1), WithLogger(logger), WithLockMode(LockBestEffort))
	if err != nil {
		t.Fatal(err)
	}
	if s.Stats().LockFailures > 0 {
		t.Skip("the process is at its memory-lock limit: New's own lock was refused, and the one \"memory not locked\" event a Shuffler logs went out before the test could raise it")
	}
	allocN(t, s, 64, 1<<10)
	if s.Stats().LockFailures > 0 {
		s.Close()
		t.Skip("the process reached its memory-lock limit in the test's own Allocs: the one \"memory not locked\" event a Shuffler logs went out before the background shuffler could raise it")
	}
	armed.Store(true)
	refuse(t, osmem.OpLock)
	if _, err := s.StartBackgroundShuffle(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	if err := errWithin(t, seen, "the background shuffler raised no event"); err != nil {
		t.Fatal(err)
	}
	if err := errWithin(t, purged, "Purge from the background shuffler's logger did not return while Close ran"); err != nil {
		t.Fatal(err)
	}
	if err := errWithin(t, closed, "Close did not return"); err != nil {
		t.Fatal(err)
	}
	if s.Stats().LockFailures == 0 {
		t.Fatal("no lock was refused")
	}
}

// TestStopBackgroundFromLogger: a WithLogger handler that answers the
// background shuffler's "memory not locked" warning by calling the stop
// function StartBackgroundShuffle returned gets it back, and Close works
// afterwards. The background goroutine handed its events to the logger
// itself, so stop, run in the handler, waited for the goroutine it ran on:
// both hung for good, and Close with them.
func TestStopBackgroundFromLogger(t *testing.T) {
	var mu sync.Mutex
	var stop func()
	stopped := make(chan struct{})
	var once sync.Once
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		st := stop
		mu.Unlock()
		if st != nil && strings.Contains(string(p), "memory not locked") {
			once.Do(func() {
				st()
				close(stopped)
			})
		}
		return len(p), nil
	}), nil))
	s, err := New(WithShards(1), WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	for range 40 {
		if _, err := Alloc[byte](s, 20<<10); err != nil {
			t.Fatal(err)
		}
	}
	if s.Stats().LockFailures > 0 {
		s.Close()
		t.Skip("the process is at its memory-lock limit: the one \"memory not locked\" event a Shuffler logs went out before the test could raise it")
	}
	mu.Lock()
	stop, err = s.StartBackgroundShuffle(context.Background(), 0)
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	refuse(t, osmem.OpLock)
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("stop, called from the logger, has not returned after 10 s")
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close has not returned after 10 s")
	}
}

// TestCloseWaitsForBackgroundLogger: Close returns only once the logger
// is done with the events the background shuffler raised: none reaches
// it afterwards. Those events go to the logger from a goroutine of their
// own (so that a handler may stop the shuffler), and Close returned while
// that goroutine was still in a slow handler.
func TestCloseWaitsForBackgroundLogger(t *testing.T) {
	var s *Shuffler
	entered := make(chan struct{})
	release := make(chan struct{})
	var inHandler atomic.Int32
	var once atomic.Bool
	var armed atomic.Bool // the test's own Allocs may reach the limit: only the background shuffler's events count
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		if !armed.Load() || !strings.Contains(string(p), "memory not locked") {
			return len(p), nil
		}
		if once.CompareAndSwap(false, true) {
			inHandler.Add(1)
			close(entered)
			<-release // a slow sink: a log shipper on the network, say
			time.Sleep(10 * time.Millisecond)
			inHandler.Add(-1)
		}
		return len(p), nil
	}), nil))
	var err error
	s, err = New(WithShards(1), WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	allocN(t, s, 64, 1<<10)
	if s.Stats().LockFailures > 0 {
		s.Close()
		t.Skip("at the memory-lock limit already: the one \"memory not locked\" event a Shuffler logs has gone out")
	}
	armed.Store(true)
	refuse(t, osmem.OpLock)
	if _, err := s.StartBackgroundShuffle(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no event reached the logger")
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while the logger still had a background event", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if n := inHandler.Load(); n != 0 {
		t.Fatalf("Close returned with %d goroutines in the logger", n)
	}
}
