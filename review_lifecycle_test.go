package memshuffle

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestCloseWhileLongRentLoggerPurges: WithLogger allows a handler of the
// long-rent event to Purge. When Close runs meanwhile, it must not wait for
// the rent watcher while holding what Purge needs: the watcher is inside
// the handler, inside Purge, and would never return.
func TestCloseWhileLongRentLoggerPurges(t *testing.T) {
	var s *Shuffler
	var stopped <-chan struct{} // the watcher's stop channel, which Close closes
	reported := make(chan struct{})
	purged := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		if strings.Contains(string(p), "rent held longer") {
			close(reported)
			// Purge once Close has begun.
			<-stopped
			purged <- s.Purge()
		}
		return len(p), nil
	}), nil))
	s, err := New(WithShards(1), WithRentTracking(time.Millisecond), WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	stopped = s.stopWatch
	h, err := Alloc[byte](s, 32)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RentSlice[byte](s, h); err != nil { // never returned
		t.Fatal(err)
	}
	<-reported
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: it waits for the rent watcher, whose logger waits in Purge for Close")
	}
	if err := <-purged; err != nil {
		t.Fatal(err)
	}
	goroutineGone(t, "watchRents")
}
