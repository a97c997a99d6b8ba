package memshuffle

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// errLater is a context that is not done when StartBackgroundShuffle is
// called, and whose Err panics once it is.
type errLater struct {
	context.Context
	c chan struct{}
}

func (l errLater) Done() <-chan struct{} { return l.c }
func (l errLater) Err() error {
	select {
	case <-l.c:
		panic("Err")
	default:
		return nil
	}
}

// TestStartBackgroundShuffleHostileContext: StartBackgroundShuffle, like
// RentContext, takes a context of the caller's, and a context whose Done
// or Err panics, or that is done with no Err, must not make it panic (doc:
// "No input makes a call panic"). It derived its own context with
// context.WithCancel, which calls both at once: the call panicked, while
// holding closeMu.
func TestStartBackgroundShuffleHostileContext(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want error // nil: started, and stopped at once (ctx is done)
	}{
		{"Done panics", panicsIn{context.Background(), true}, ErrPanicked},
		{"done, Err panics", panicsIn{context.Background(), false}, nil},
		{"done without an error", doneNoErr{context.Background()}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTest(t)
			var stop func()
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						err = fmt.Errorf("panic: %v", p)
					}
				}()
				stop, err = s.StartBackgroundShuffle(tc.ctx, time.Millisecond)
			}()
			if !errors.Is(err, tc.want) || (err == nil) != (stop != nil) {
				t.Fatalf("StartBackgroundShuffle = %v, want %v", err, tc.want)
			}
			if stop != nil {
				stop()
			}
			// Nothing is left running or locked: another can start.
			stop, err = s.StartBackgroundShuffle(context.Background(), time.Hour)
			if err != nil {
				t.Fatal("a second StartBackgroundShuffle:", err)
			}
			stop()
		})
	}
}

// TestStartBackgroundShuffleContextErrPanicsLater: a context whose Err
// panics once it is done, later than the call. context.WithCancel of it
// started a goroutine of the context package that calls Err when Done
// closes: the panic there ended the process (this test binary, without
// the fix).
func TestStartBackgroundShuffleContextErrPanicsLater(t *testing.T) {
	s := newTest(t)
	ctx := errLater{context.Background(), make(chan struct{})}
	stop, err := s.StartBackgroundShuffle(ctx, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	close(ctx.c)
	// Wait until the shuffler stops on ctx, which the context package's
	// goroutine does by asking Err: a fixed sleep could end first, and
	// stop's cancel then races ctx in that goroutine's select.
	deadline := time.Now().Add(10 * time.Second)
	for {
		stop2, err := s.StartBackgroundShuffle(context.Background(), time.Hour)
		if err == nil {
			stop2()
			break
		}
		if !errors.Is(err, ErrBackgroundRunning) || time.Now().After(deadline) {
			t.Fatalf("the background shuffler did not stop on its done context: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	stop()
}

// reentrantCtx is a context of the caller's whose Value, or Err once done,
// runs f first: code that purges or closes the Shuffler, as SafePanic does.
type reentrantCtx struct {
	context.Context
	inValue bool
	f       func()
}

func (c reentrantCtx) Value(key any) any {
	if c.inValue {
		c.f()
	}
	return c.Context.Value(key)
}

func (c reentrantCtx) Err() error {
	if err := c.Context.Err(); err != nil {
		if !c.inValue {
			c.f()
		}
		return err
	}
	return nil
}

// TestStartBackgroundShuffleContextPurges: a context whose Value or Err
// purges the Shuffler (Purge, or PurgeAll through SafePanic) leaves Close,
// Purge and PurgeAll working. StartBackgroundShuffle derived its context
// under closeMu, and the context package asked the caller's Value (to find
// a cancelable parent) and, of a done context, its Err there: Purge waited
// for closeMu for ever, and every later Close, Purge and PurgeAll with it.
// The cancel Close and Purge call under closeMu asked Value again.
func TestStartBackgroundShuffleContextPurges(t *testing.T) {
	for _, inValue := range []bool{true, false} {
		for _, purge := range []string{"Purge", "SafePanic"} {
			t.Run(fmt.Sprintf("inValue=%v/%s", inValue, purge), func(t *testing.T) {
				s := newTest(t)
				f := func() { _ = s.Purge() }
				if purge == "SafePanic" {
					f = func() { SafePanic("from the context") }
				}
				parent, cancel := context.WithCancel(context.Background())
				if !inValue {
					cancel() // done already: its Err is asked at once
				}
				defer cancel()
				err := returnsWithin(t, func() error {
					stop, err := s.StartBackgroundShuffle(reentrantCtx{parent, inValue, f}, time.Millisecond)
					if err == nil {
						cancel()
						stop()
					}
					return err
				})
				if err != nil && !errors.Is(err, ErrClosed) {
					t.Errorf("StartBackgroundShuffle: %v", err)
				}
				if err := returnsWithin(t, PurgeAll); err != nil {
					t.Errorf("PurgeAll: %v", err)
				}
				if err := returnsWithin(t, s.Close); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
		}
	}
}

// wrappedCtx is a context of the caller's own type around a standard one.
type wrappedCtx struct{ context.Context }

// TestBackgroundContextLeavesParent: the background shuffler's context
// joins a standard cancelable parent, directly or under a type of the
// caller's (so that cancelling the parent stops it at once), and leaves
// it again however the shuffler ends: stopped, refused, purged, closed.
// The context package finds the parent through Value when it removes the
// child, after guardedCtx's Value is frozen: answering nil then, it left
// a child in the parent for every start, for as long as the parent lived.
func TestBackgroundContextLeavesParent(t *testing.T) {
	children := func(t *testing.T, ctx context.Context) int {
		t.Helper()
		v := reflect.ValueOf(ctx).Elem().FieldByName("children")
		if !v.IsValid() {
			t.Skip("the context package keeps no children field")
		}
		return v.Len()
	}
	ends := map[string]func(t *testing.T, s *Shuffler, stop func()){
		"stop": func(_ *testing.T, _ *Shuffler, stop func()) { stop() },
		"refused start, then stop": func(t *testing.T, s *Shuffler, stop func()) {
			if _, err := s.StartBackgroundShuffle(context.Background(), time.Hour); !errors.Is(err, ErrBackgroundRunning) {
				t.Errorf("a second start: %v, want ErrBackgroundRunning", err)
			}
			stop()
		},
		"Purge": func(_ *testing.T, s *Shuffler, _ func()) { s.Purge() },
		"Close": func(_ *testing.T, s *Shuffler, _ func()) { s.Close() },
	}
	for name, end := range ends {
		for _, wrapped := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/wrapped=%v", name, wrapped), func(t *testing.T) {
				s := newTest(t)
				parent, cancel := context.WithCancel(context.Background())
				defer cancel()
				var ctx context.Context = parent
				if wrapped {
					ctx = wrappedCtx{parent}
				}
				stop, err := s.StartBackgroundShuffle(ctx, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				if n := children(t, parent); n != 1 {
					t.Fatalf("the parent has %d children while the shuffler runs, want 1", n)
				}
				end(t, s, stop)
				if n := children(t, parent); n != 0 {
					t.Errorf("the parent has %d children once the shuffler ended, want 0", n)
				}
			})
		}
	}
	t.Run("closed", func(t *testing.T) {
		s := newTest(t)
		s.Close()
		parent, cancel := context.WithCancel(context.Background())
		defer cancel()
		if _, err := s.StartBackgroundShuffle(parent, time.Hour); !errors.Is(err, ErrClosed) {
			t.Fatalf("start on a closed Shuffler: %v, want ErrClosed", err)
		}
		if n := children(t, parent); n != 0 {
			t.Errorf("the parent has %d children after a refused start, want 0", n)
		}
	})
}
