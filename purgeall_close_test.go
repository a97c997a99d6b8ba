package memshuffle

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// blockingHandler, once armed, blocks every Handle call until release is
// closed; entered is closed at the first such call. Records before it is
// armed pass: a process at its memory-lock limit has New and the test's
// own allocations log a refused lock, on the test's goroutine.
type blockingHandler struct {
	entered chan struct{}
	release chan struct{}
	armed   *atomic.Bool
	once    *sync.Once
}

func (g blockingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (g blockingHandler) Handle(context.Context, slog.Record) error {
	if !g.armed.Load() {
		return nil
	}
	g.once.Do(func() { close(g.entered) })
	<-g.release
	return nil
}
func (g blockingHandler) WithAttrs([]slog.Attr) slog.Handler { return g }
func (g blockingHandler) WithGroup(string) slog.Handler      { return g }

// TestPurgeAllDuringClose: PurgeAll (and so SafeExit, SafePanic and
// PurgeAllOnSignal) purges a Shuffler whose Close has begun but not yet
// wiped anything, here while Close waits for a background step whose
// logger blocks. Close took it out of the registry first, and PurgeAll
// returned with its keys in place and its entries readable.
func TestPurgeAllDuringClose(t *testing.T) {
	g := blockingHandler{make(chan struct{}), make(chan struct{}), new(atomic.Bool), new(sync.Once)}
	s := newTest(t, WithShards(1), WithArenaSize(4096), WithLogger(slog.New(g)),
		WithBackgroundShuffle(time.Millisecond))
	secret := []byte("purgeall-must-wipe-this-secret!!")
	h, err := CopyFrom(s, bytes.Clone(secret))
	if err != nil {
		t.Fatal(err)
	}
	for range 64 {
		if _, err := Random(s, 48); err != nil {
			t.Fatal(err)
		}
	}
	if s.Stats().LockFailures > 0 {
		t.Skip("the process is at its memory-lock limit: the one \"memory not locked\" event a Shuffler logs went out before the test could raise it")
	}
	// A lock refusal in a background cycle (the memlock limit) raises a
	// warning, which the background goroutine hands to the logger.
	g.armed.Store(true)
	osmem.SetFault(func(op osmem.Op) error {
		if op == osmem.OpLock {
			return osmem.ErrInjected
		}
		return nil
	})
	defer osmem.SetFault(nil)
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("logger never called")
	}
	osmem.SetFault(nil)
	closed := make(chan error)
	go func() { closed <- s.Close() }() // e.g. a deferred Close on the way out
	// Close gets as far as the wait for the background step, whose logger
	// blocks, and stays there. (It took the Shuffler out of the registry
	// on its way.)
	time.Sleep(100 * time.Millisecond)
	// Meanwhile SIGTERM arrives, or another goroutine calls SafeExit:
	if err := PurgeAll(); err != nil {
		t.Fatal(err)
	}
	keyZero := true
	for _, c := range s.own.Data[:ownScratch] {
		keyZero = keyZero && c == 0
	}
	v, verr := ViewSlice[byte](s, h)
	got := bytes.Clone(v)
	if verr == nil {
		s.ReturnView(h)
	}
	close(g.release)
	<-closed
	if !keyZero || verr == nil {
		t.Fatalf("after PurgeAll returned: key region wiped=%v, View err=%v, plaintext=%q", keyZero, verr, got)
	}
}
