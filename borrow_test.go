package memshuffle

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBorrow(t *testing.T) {
	s := newTest(t)
	h, _ := Create[[4]uint32](s)
	if err := Borrow(s, h, func(p *[4]uint32) error { p[2] = 42; return nil }); err != nil {
		t.Fatal(err)
	}
	errFn := errors.New("fn failed")
	if err := BorrowSlice(s, h, func(v []uint32) error { return errFn }); err != errFn {
		t.Fatalf("fn error: %v", err)
	}
	var got uint32
	BorrowView(s, h, func(p *[4]uint32) error { got = p[2]; return nil })
	if got != 42 {
		t.Fatalf("got %d", got)
	}
	// A panic in fn still returns the entry, encrypted, before going on.
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("panic swallowed")
			}
		}()
		BorrowSlice(s, h, func(v []byte) error {
			copy(v, "plaintext inside")
			panic("boom")
		})
	}()
	if raw, _ := rawBytes(s, h); bytes.Equal(raw, []byte("plaintext inside")) {
		t.Fatal("entry left decrypted after a panic")
	}
	if err := BorrowViewSlice(s, h, func(v []byte) error {
		if string(v) != "plaintext inside" {
			t.Fatalf("got %q", v)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, s)
}

func TestBorrowViewPanics(t *testing.T) {
	s := newTest(t)
	h, _ := Create[uint64](s)
	func() {
		defer func() { recover() }()
		BorrowView(s, h, func(*uint64) error { panic("x") })
	}()
	if _, err := Rent[uint64](s, h); err != nil {
		t.Fatalf("view not ended by the panic: %v", err)
	}
	s.Return(h)
	if err := Borrow(s, Handle{}, func(*uint64) error { return nil }); !errors.Is(err, ErrInvalidHandle) {
		t.Fatal(err)
	}
	mustCheck(t, s)
}

func TestViews(t *testing.T) {
	s := newTest(t, WithShards(1))
	h, _ := CopyFrom(s, []byte("shared api key: 0123456789"))
	want := "shared api key: 0123456789"
	v1, err := ViewSlice[byte](s, h)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := ViewSlice[byte](s, h)
	if err != nil {
		t.Fatal(err)
	}
	if &v1[0] != &v2[0] || string(v2) != want {
		t.Fatal("second view differs")
	}
	for _, tc := range []struct {
		name string
		err  error
		call func() error
	}{
		{"Rent of viewed", ErrBusy, func() error { _, err := Rent[byte](s, h); return err }},
		{"Free of viewed", ErrBusy, func() error { return s.Free(h) }},
		{"Return of viewed", ErrNotRented, func() error { return s.Return(h) }},
	} {
		if err := tc.call(); !errors.Is(err, tc.err) {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
	mustCheck(t, s)
	if err := s.ReturnView(h); err != nil {
		t.Fatal(err)
	}
	if raw, _ := rawBytes(s, h); string(raw) != want {
		t.Fatal("entry encrypted while a viewer remains")
	}
	if err := s.ReturnView(h); err != nil {
		t.Fatal(err)
	}
	if raw, _ := rawBytes(s, h); string(raw) == want {
		t.Fatal("entry not encrypted after the last viewer")
	}
	if err := s.ReturnView(h); !errors.Is(err, ErrNotRented) {
		t.Fatalf("extra ReturnView: %v", err)
	}
	Rent[byte](s, h)
	if _, err := View[byte](s, h); !errors.Is(err, ErrBusy) {
		t.Fatalf("View of rented: %v", err)
	}
	if err := s.ReturnView(h); !errors.Is(err, ErrNotRented) {
		t.Fatalf("ReturnView of rented: %v", err)
	}
	s.Return(h)
	mustCheck(t, s)
}

// TestViewLimit: an entry takes 65,535 open views; one more fails with
// ErrBusy (also in ViewContext, which would otherwise wait for nothing)
// instead of wrapping the count, and the entry stays readable, then sealed
// once the last view ends.
func TestViewLimit(t *testing.T) {
	s := newTest(t, WithShards(1))
	want := "many readers"
	h, err := CopyFrom(s, []byte(want))
	if err != nil {
		t.Fatal(err)
	}
	const limit = 1<<16 - 1
	for k := range limit {
		if _, err := ViewSlice[byte](s, h); err != nil {
			t.Fatalf("view %d: %v", k+1, err)
		}
	}
	if _, err := ViewSlice[byte](s, h); !errors.Is(err, ErrBusy) {
		t.Fatalf("view %d: %v, want ErrBusy", limit+1, err)
	}
	if _, err := ViewContext[byte](context.Background(), s, h); !errors.Is(err, ErrBusy) {
		t.Fatalf("ViewContext past the limit: %v, want ErrBusy", err)
	}
	mustCheck(t, s)
	if raw, _ := rawBytes(s, h); string(raw) != want {
		t.Fatal("a refused view disturbed the open ones")
	}
	for k := range limit {
		if err := s.ReturnView(h); err != nil {
			t.Fatalf("ReturnView %d: %v", k+1, err)
		}
		if k == limit-2 {
			if raw, _ := rawBytes(s, h); string(raw) != want {
				t.Fatal("entry encrypted while a viewer remains")
			}
		}
	}
	if raw, _ := rawBytes(s, h); string(raw) == want {
		t.Fatal("entry not encrypted after the last viewer")
	}
	if err := s.ReturnView(h); !errors.Is(err, ErrNotRented) {
		t.Fatalf("extra ReturnView: %v", err)
	}
}

// TestStatsRentedViewed checks that Stats tells rents from views: an entry
// counts as viewed once however many views it has open, and each count
// falls back when its borrows end, also through a Borrow function.
func TestStatsRentedViewed(t *testing.T) {
	s := newTest(t, WithShards(2))
	var hs [3]Handle
	for i := range hs {
		hs[i], _ = CopyFrom(s, []byte("entry"))
	}
	want := func(rented, viewed int) {
		t.Helper()
		if st := s.Stats(); st.Rented != rented || st.Viewed != viewed {
			t.Fatalf("Rented %d, Viewed %d; want %d and %d", st.Rented, st.Viewed, rented, viewed)
		}
		mustCheck(t, s)
	}
	want(0, 0)
	if _, err := RentSlice[byte](s, hs[0]); err != nil {
		t.Fatal(err)
	}
	want(1, 0)
	for range 3 {
		if _, err := ViewSlice[byte](s, hs[1]); err != nil {
			t.Fatal(err)
		}
	}
	want(1, 1)
	BorrowViewSlice(s, hs[2], func([]byte) error { want(1, 2); return nil })
	BorrowSlice(s, hs[2], func([]byte) error { want(2, 1); return nil })
	want(1, 1)
	for range 2 {
		s.ReturnView(hs[1])
		want(1, 1)
	}
	s.ReturnView(hs[1])
	want(1, 0)
	s.Return(hs[0])
	want(0, 0)
}

// TestViewsConcurrent has readers share an entry while a writer takes it
// exclusively now and then, waiting for the readers with a context.
func TestViewsConcurrent(t *testing.T) {
	s := newTest(t, WithShuffleOnBorrowReturn(true))
	h, _ := Create[[8]uint64](s)
	// Start from a value that already has the shape readers check for.
	Borrow(s, h, func(p *[8]uint64) error {
		for j := range p {
			p[j] = uint64(j)
		}
		return nil
	})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errc := make(chan error, 16)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := BorrowViewSlice(s, h, func(v []uint64) error {
					for i := range v {
						if v[i] != v[0]+uint64(i) {
							return errors.New("torn read")
						}
					}
					return nil
				})
				if err != nil && !errors.Is(err, ErrBusy) {
					errc <- err
					return
				}
			}
		}()
	}
	for i := range 300 {
		p, err := RentContext[[8]uint64](context.Background(), s, h)
		if err != nil {
			t.Fatal(err)
		}
		for j := range p {
			p[j] = uint64(i*100 + j)
		}
		if err := s.Return(h); err != nil {
			t.Fatal(err)
		}
		s.Shuffle()
	}
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	mustCheck(t, s)
}

func TestContextWait(t *testing.T) {
	s := newTest(t)
	h, _ := Create[uint64](s)
	p, _ := Rent[uint64](s, h)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := RentContext[uint64](ctx, s, h); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait on a rented entry: %v", err)
	}
	if _, err := ViewSliceContext[byte](ctx, s, h); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("view wait: %v", err)
	}
	done := make(chan error)
	go func() {
		q, err := RentSliceContext[uint64](context.Background(), s, h)
		if err == nil && q[0] != 7 {
			err = errors.New("waiter saw the old value")
		}
		if err == nil {
			err = s.Return(h)
		}
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	*p = 7
	s.Return(h)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Close wakes a waiter, which then sees ErrClosed.
	s2, _ := New()
	h2, _ := Create[uint64](s2)
	Rent[uint64](s2, h2)
	go func() { _, err := ViewContext[uint64](context.Background(), s2, h2); done <- err }()
	time.Sleep(20 * time.Millisecond)
	s2.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("waiter after Close: %v", err)
	}
}

// TestReturnWakesOnlyItsWaiters: a goroutine waiting for a busy entry is
// woken by that entry's return, not by every return in its shard. One
// channel for the shard woke every waiter at each Return, each to take the
// shard lock and most to sleep again: with 16,000 waiting, a Rent+Return
// of another entry waited 8.4 ms at the 99th percentile.
func TestReturnWakesOnlyItsWaiters(t *testing.T) {
	s := newTest(t, WithShards(1))
	busy, _ := Create[uint64](s)
	other, _ := Create[uint64](s)
	if _, err := Rent[uint64](s, busy); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		_, err := RentContext[uint64](context.Background(), s, busy)
		if err == nil {
			err = s.Return(busy)
		}
		done <- err
	}()
	sh := &s.shards[0]
	// The waiter's channel, once it waits: Chan hands out the one there is.
	var wake chan struct{}
	for deadline := time.Now().Add(10 * time.Second); wake == nil; {
		if time.Now().After(deadline) {
			t.Fatal("the waiter never waited")
		}
		time.Sleep(time.Millisecond)
		sh.mu.Lock()
		if sh.Waiters.Waiting(busy.id) {
			wake = sh.Waiters.Chan(busy.id)
		}
		sh.mu.Unlock()
	}
	for range 100 {
		if _, err := Rent[uint64](s, other); err != nil {
			t.Fatal(err)
		}
		if err := s.Return(other); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-wake:
		t.Fatal("another entry's Return woke the waiter")
	case err := <-done:
		t.Fatalf("the waiter stopped waiting: %v", err)
	default:
	}
	if err := s.Return(busy); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mustCheck(t, s)
}

// TestBorrowContext checks the waiting Borrow forms: they wait out a rent, run
// fn and end the borrow; when ctx ends first they return its error without
// calling fn; and they end the borrow when fn panics.
func TestBorrowContext(t *testing.T) {
	s := newTest(t)
	h, _ := CopyFrom(s, []byte("v1-secret"))
	forms := []struct {
		name string
		call func(ctx context.Context, fn func([]byte) error) error
	}{
		{"BorrowSliceContext", func(ctx context.Context, fn func([]byte) error) error {
			return BorrowSliceContext(ctx, s, h, fn)
		}},
		{"BorrowViewSliceContext", func(ctx context.Context, fn func([]byte) error) error {
			return BorrowViewSliceContext(ctx, s, h, fn)
		}},
		{"BorrowContext", func(ctx context.Context, fn func([]byte) error) error {
			return BorrowContext(ctx, s, h, func(p *[9]byte) error { return fn(p[:]) })
		}},
		{"BorrowViewContext", func(ctx context.Context, fn func([]byte) error) error {
			return BorrowViewContext(ctx, s, h, func(p *[9]byte) error { return fn(p[:]) })
		}},
	}
	for _, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			// Busy until a writer returns: the call waits, then sees the
			// writer's value.
			b, err := RentSlice[byte](s, h)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				time.Sleep(20 * time.Millisecond)
				copy(b, "v2-secret")
				s.Return(h)
			}()
			var got string
			err = f.call(context.Background(), func(v []byte) error {
				got = string(v)
				return nil
			})
			if err != nil || got != "v2-secret" {
				t.Fatalf("after waiting: %q, %v", got, err)
			}
			// ctx ends first: fn is not called.
			if _, err := RentSlice[byte](s, h); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			called := false
			err = f.call(ctx, func([]byte) error { called = true; return nil })
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) || called {
				t.Fatalf("ctx done while busy: err %v, fn called %v", err, called)
			}
			s.Return(h)
			// A panic in fn ends the borrow before it goes on.
			func() {
				defer func() {
					if recover() == nil {
						t.Fatal("panic swallowed")
					}
				}()
				f.call(context.Background(), func([]byte) error { panic("boom") })
			}()
			if st := s.Stats(); st.Rented+st.Viewed != 0 {
				t.Fatalf("%d entries still borrowed after a panic", st.Rented+st.Viewed)
			}
			var nilCtx context.Context
			if err := f.call(nilCtx, func([]byte) error { return nil }); !errors.Is(err, ErrNilArgument) {
				t.Fatalf("nil context: %v", err)
			}
		})
	}
	if err := BorrowSliceContext[byte](context.Background(), s, h, nil); !errors.Is(err, ErrNilArgument) {
		t.Fatalf("nil fn: %v", err)
	}
	mustCheck(t, s)
}

// TestWriterPreference checks that readers whose views overlap without a
// pause cannot keep a waiting writer out, that new views wait (or fail with
// ErrBusy) while a writer does, and that a writer who gives up lets the
// readers it held back in.
func TestWriterPreference(t *testing.T) {
	s := newTest(t)
	h, _ := CopyFrom(s, []byte("api-key-v1"))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var views atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				b, err := ViewSliceContext[byte](context.Background(), s, h)
				if err != nil {
					t.Error(err)
					return
				}
				views.Add(1)
				time.Sleep(100 * time.Microsecond)
				ok := string(b[:8]) == "api-key-"
				s.ReturnView(h)
				if !ok {
					t.Error("a reader saw a value that is not a key")
					return
				}
			}
		}()
	}
	waitFor(t, "overlapping views", func() bool { return views.Load() > 100 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := RentSliceContext[byte](ctx, s, h)
	if err != nil {
		t.Fatalf("writer behind overlapping views: %v", err)
	}
	copy(b, "api-key-v2")
	s.Return(h)
	close(stop)
	wg.Wait()
	if got := readAll(t, s, h); string(got) != "api-key-v2" {
		t.Fatalf("after the write: %q", got)
	}

	// While a writer waits behind a view, View fails with ErrBusy and
	// ViewContext waits; when the writer gives up, the waiting reader gets
	// in at once.
	if _, err := ViewSlice[byte](s, h); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(context.Background())
	writer := make(chan error, 1)
	go func() { _, err := RentSliceContext[byte](wctx, s, h); writer <- err }()
	waitFor(t, "the writer to queue", func() bool {
		_, err := ViewSlice[byte](s, h)
		if err == nil {
			s.ReturnView(h)
		}
		return errors.Is(err, ErrBusy)
	})
	reader := make(chan error, 1)
	go func() {
		_, err := ViewSliceContext[byte](context.Background(), s, h)
		if err == nil {
			err = s.ReturnView(h)
		}
		reader <- err
	}()
	select {
	case err := <-reader:
		t.Fatalf("a new view got in ahead of a waiting writer: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	wcancel()
	if err := <-writer; !errors.Is(err, context.Canceled) {
		t.Fatalf("writer: %v", err)
	}
	if err := <-reader; err != nil {
		t.Fatalf("reader after the writer gave up: %v", err)
	}
	if err := s.ReturnView(h); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, s)
	if st := s.Stats(); st.Rented+st.Viewed != 0 {
		t.Fatalf("%d entries still borrowed", st.Rented+st.Viewed)
	}
}

// goroutineGone waits for no goroutine to be running fn.
func goroutineGone(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for range 100 {
		n := runtime.Stack(buf, true)
		if !strings.Contains(string(buf[:n]), fn) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("a goroutine running %s outlived Close", fn)
}

func TestRentTracking(t *testing.T) {
	var logBuf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logBuf.Write(p)
	}), nil))
	// Long enough that the quick rent below is not reported on a loaded
	// machine, whose scheduler can stall the test tens of milliseconds
	// between its Rent and its Return.
	s, err := New(WithRentTracking(200*time.Millisecond), WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := CopyFrom(s, []byte("tracked-secret-value"))
	quick, _ := Create[uint64](s)
	Rent[uint64](s, quick)
	s.Return(quick)
	if _, err := RentSlice[byte](s, h); err != nil { // forgotten Return
		t.Fatal(err)
	}
	waitFor(t, "the long rent to be reported", func() bool { return s.Stats().LongRentsSeen == 1 })
	long := s.LongRents()
	if len(long) != 1 || long[0].Handle != h || !strings.HasPrefix(long[0].Stack, "github.com/memshuffle/memshuffle.TestRentTracking\n") {
		t.Fatalf("LongRents = %+v, want the stack to start at the caller of RentSlice", long)
	}
	st := s.Stats()
	if st.LongRents != 1 || st.LongRentsSeen != 1 {
		t.Fatalf("Stats: %+v", st)
	}
	mu.Lock()
	logged := logBuf.String()
	mu.Unlock()
	if strings.Count(logged, "rent held longer") != 1 || !strings.Contains(logged, "TestRentTracking") {
		t.Fatalf("log: %s", logged)
	}
	if strings.Contains(logged, "tracked-secret") {
		t.Fatal("the log holds the secret")
	}
	s.Return(h)
	if len(s.LongRents()) != 0 || s.Stats().LongRents != 0 {
		t.Fatal("returned rent still reported")
	}
	if _, err := New(WithRentTracking(0)); !errors.Is(err, ErrInvalidOption) {
		t.Fatal(err)
	}
	s.Close()
	goroutineGone(t, "memshuffle.(*Shuffler).watchRents")
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
