package memshuffle

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"
)

// endings are the ways caller code ends without returning: runtime.Goexit
// (t.FailNow), a panic with a value that is no error, and panic(nil),
// which Go 1.21 and later raise as a *runtime.PanicNilError.
var endings = []struct {
	name string
	end  func()
}{
	{"Goexit", runtime.Goexit},
	{"panic", func() { panic("caller bug") }},
	{"panic(nil)", func() { panic(nil) }},
}

// onGoroutine runs f on a goroutine of its own, swallowing its panic, and
// waits for it to end; after 10 s it fails the test with every
// goroutine's stack.
func onGoroutine(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }()
		f()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("hung:\n%s", buf[:runtime.Stack(buf, true)])
	}
}

// withTimeout runs f and fails the test with every goroutine's stack if
// it takes more than 10 s.
func withTimeout(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("%s hung:\n%s", what, buf[:runtime.Stack(buf, true)])
	}
}

// usable checks that h is neither rented nor viewed and can be rented.
func usable(t *testing.T, s *Shuffler, h Handle) {
	t.Helper()
	if st := s.Stats(); st.Rented != 0 || st.Viewed != 0 {
		t.Errorf("%d rented, %d viewed; want none", st.Rented, st.Viewed)
	}
	withTimeout(t, "Rent", func() {
		if _, err := RentSlice[byte](s, h); err != nil {
			t.Errorf("Rent after: %v", err)
			return
		}
		if err := s.Return(h); err != nil {
			t.Errorf("Return after: %v", err)
		}
	})
	if err := s.check(); err != nil {
		t.Error(err)
	}
}

// TestGoexitSweepBorrow: a Borrow function's fn, or WriteTo's writer, that
// ends its goroutine leaves the entry neither rented nor viewed nor
// pinned.
func TestGoexitSweepBorrow(t *testing.T) {
	ctx := context.Background()
	for _, e := range endings {
		for _, c := range []struct {
			name string
			run  func(*Shuffler, Handle, func()) error
		}{
			{"Borrow", func(s *Shuffler, h Handle, end func()) error {
				return Borrow(s, h, func(*[32]byte) error { end(); return nil })
			}},
			{"BorrowSlice", func(s *Shuffler, h Handle, end func()) error {
				return BorrowSlice(s, h, func([]byte) error { end(); return nil })
			}},
			{"BorrowView", func(s *Shuffler, h Handle, end func()) error {
				return BorrowView(s, h, func(*[32]byte) error { end(); return nil })
			}},
			{"BorrowViewSlice", func(s *Shuffler, h Handle, end func()) error {
				return BorrowViewSlice(s, h, func([]byte) error { end(); return nil })
			}},
			{"BorrowContext", func(s *Shuffler, h Handle, end func()) error {
				return BorrowContext(ctx, s, h, func(*[32]byte) error { end(); return nil })
			}},
			{"BorrowSliceContext", func(s *Shuffler, h Handle, end func()) error {
				return BorrowSliceContext(ctx, s, h, func([]byte) error { end(); return nil })
			}},
			{"BorrowViewContext", func(s *Shuffler, h Handle, end func()) error {
				return BorrowViewContext(ctx, s, h, func(*[32]byte) error { end(); return nil })
			}},
			{"BorrowViewSliceContext", func(s *Shuffler, h Handle, end func()) error {
				return BorrowViewSliceContext(ctx, s, h, func([]byte) error { end(); return nil })
			}},
			{"WriteTo", func(s *Shuffler, h Handle, end func()) error {
				_, err := WriteTo(s, h, writerFunc(func(p []byte) (int, error) { end(); return len(p), nil }))
				return err
			}},
		} {
			t.Run(e.name+"/"+c.name, func(t *testing.T) {
				s := newTest(t)
				h, err := CopyFrom(s, make32())
				if err != nil {
					t.Fatal(err)
				}
				var ferr error
				onGoroutine(t, func() { ferr = c.run(s, h, e.end) })
				// The Borrow functions let a panic go on; WriteTo returns it.
				if c.name == "WriteTo" && e.name != "Goexit" && !errors.Is(ferr, ErrPanicked) {
					t.Errorf("WriteTo: %v, want ErrPanicked", ferr)
				}
				usable(t, s, h)
			})
		}
	}
}

func make32() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

// endingHandler is a slog handler that ends the goroutine it runs on, at
// any event but the one a refused lock of memory raises (see lockEvent).
type endingHandler struct {
	slog.Handler
	end func()
}

func (h endingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h endingHandler) Handle(_ context.Context, r slog.Record) error {
	if !lockEvent(r) {
		h.end()
	}
	return nil
}

// TestGoexitSweepLoggerInBorrow: an event that waits in the outbox (raised
// by another goroutine's call under a shard lock) is handed to the logger
// by the next call that lets go of a shard lock, a Rent or Borrow among
// them, after the entry is taken. A handler that ends that goroutine must
// leave the entry neither rented nor viewed (nor pinned).
func TestGoexitSweepLoggerInBorrow(t *testing.T) {
	for _, e := range endings {
		for _, c := range []struct {
			name string
			run  func(*Shuffler, Handle)
		}{
			{"Rent", func(s *Shuffler, h Handle) {
				if _, err := RentSlice[byte](s, h); err == nil {
					s.Return(h) // the handler panicked, and Rent went on
				}
			}},
			{"View", func(s *Shuffler, h Handle) {
				if _, err := ViewSlice[byte](s, h); err == nil {
					s.ReturnView(h)
				}
			}},
			{"Borrow", func(s *Shuffler, h Handle) { BorrowSlice(s, h, func([]byte) error { return nil }) }},
			{"BorrowView", func(s *Shuffler, h Handle) { BorrowViewSlice(s, h, func([]byte) error { return nil }) }},
			{"BorrowContext", func(s *Shuffler, h Handle) {
				BorrowSliceContext(context.Background(), s, h, func([]byte) error { return nil })
			}},
			{"WriteTo", func(s *Shuffler, h Handle) { WriteTo(s, h, io.Discard) }},
		} {
			t.Run(e.name+"/"+c.name, func(t *testing.T) {
				s := newTest(t, WithLogger(slog.New(endingHandler{end: e.end})))
				h, err := CopyFrom(s, make32())
				if err != nil {
					t.Fatal(err)
				}
				s.logLater(slog.LevelError, "an event of another goroutine's call")
				onGoroutine(t, func() { c.run(s, h) })
				usable(t, s, h)
			})
		}
	}
}

// TestGoexitSweepLoggerElsewhere: the background shuffler's events go to
// the logger from a goroutine of their own; a handler that ends it must
// not leave Close waiting for it for ever.
func TestGoexitSweepLoggerElsewhere(t *testing.T) {
	for _, e := range endings {
		t.Run(e.name, func(t *testing.T) {
			s, err := New(WithLogger(slog.New(endingHandler{end: e.end})))
			if err != nil {
				t.Fatal(err)
			}
			s.logLater(slog.LevelError, "an event of a background cycle")
			s.flushLogElsewhere()
			for s.out.pending.Load() {
				time.Sleep(time.Millisecond)
			}
			closed := false
			withTimeout(t, "Close", func() {
				if err := s.Close(); err != nil {
					t.Error(err)
				}
				closed = true
			})
			if !closed {
				t.Error("Close did not return")
			}
		})
	}
}

// endingOpts are opts whose HashFunc ends the goroutine.
type endingOpts struct{ end func() }

func (o endingOpts) HashFunc() crypto.Hash { o.end(); return crypto.SHA256 }

type endingRand struct{ end func() }

func (r endingRand) Read(p []byte) (int, error) { r.end(); return 0, nil }

// TestGoexitSweepSigner: opts and rand that end Sign's goroutine leave the
// Signer's turn given back (Ed25519's one turn, or the next Sign waits for
// ever) and the key's entry neither viewed nor rented.
func TestGoexitSweepSigner(t *testing.T) {
	_, edk, _ := ed25519.GenerateKey(rand.Reader)
	cases := randSignCases(t)
	digest := sha256.Sum256([]byte("message"))
	for _, e := range endings {
		t.Run(e.name, func(t *testing.T) {
			s := newTest(t)
			ed := newTestSigner(t, s, edk)
			rs := newTestSigner(t, s, cases[1].key)
			onGoroutine(t, func() { ed.Sign(nil, []byte("m"), endingOpts{e.end}) })
			onGoroutine(t, func() { rs.Sign(endingRand{e.end}, digest[:], cases[1].opts) })
			onGoroutine(t, func() { rs.Sign(endingRand{e.end}, digest[:], cases[1].opts) }) // a pooled key
			if st := s.Stats(); st.Rented != 0 || st.Viewed != 0 {
				t.Errorf("%d rented, %d viewed; want none", st.Rented, st.Viewed)
			}
			withTimeout(t, "Sign", func() {
				if _, err := ed.Sign(nil, []byte("m"), crypto.Hash(0)); err != nil {
					t.Error(err)
				}
				for range runtime.GOMAXPROCS(0) + 1 {
					if _, err := rs.Sign(rand.Reader, digest[:], cases[1].opts); err != nil {
						t.Error(err)
					}
				}
			})
		})
	}
}

// endingCtx is a context whose Done or Err ends the goroutine.
type endingCtx struct {
	context.Context
	inDone bool
	end    func()
}

func (c endingCtx) Done() <-chan struct{} {
	if c.inDone {
		c.end()
	}
	return closedChan
}
func (c endingCtx) Err() error { c.end(); return nil }

// TestGoexitSweepContext: a context that ends the goroutine in Done, or in
// Err once a writer waits, leaves no writer queued and nothing borrowed.
func TestGoexitSweepContext(t *testing.T) {
	for _, e := range endings {
		for _, inDone := range []bool{true, false} {
			t.Run(e.name, func(t *testing.T) {
				s := newTest(t)
				h, err := CopyFrom(s, make32())
				if err != nil {
					t.Fatal(err)
				}
				if _, err := ViewSlice[byte](s, h); err != nil {
					t.Fatal(err)
				}
				ctx := endingCtx{context.Background(), inDone, e.end}
				onGoroutine(t, func() { BorrowSliceContext(ctx, s, h, func([]byte) error { return nil }) })
				// A writer left queued would keep new views out.
				if _, err := ViewSlice[byte](s, h); err != nil {
					t.Errorf("View after: %v", err)
				} else {
					s.ReturnView(h)
				}
				s.ReturnView(h)
				usable(t, s, h)
			})
		}
	}
}
