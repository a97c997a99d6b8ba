package memshuffle

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"math"
	"sync/atomic"
	"testing"
	"time"
)

func TestExpiry(t *testing.T) {
	s := newTest(t, WithShards(1))
	h, _ := CopyFrom(s, []byte("short-lived secret"))
	keep, _ := CopyFrom(s, []byte("long-lived secret!"))
	if err := s.SetExpiry(h, time.Now().Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if at, _ := s.Expiry(h); at.IsZero() {
		t.Fatal("no expiry recorded")
	}
	if at, _ := s.Expiry(keep); !at.IsZero() {
		t.Fatal("expiry on the wrong entry")
	}
	readAll(t, s, h) // still fine
	mustCheck(t, s)
	time.Sleep(350 * time.Millisecond)
	for name, call := range map[string]func() error{
		"Rent":      func() error { _, err := Rent[byte](s, h); return err },
		"View":      func() error { _, err := ViewSlice[byte](s, h); return err },
		"Size":      func() error { _, err := s.Size(h); return err },
		"SetExpiry": func() error { return s.SetExpiry(h, time.Time{}) },
		"Return":    func() error { return s.Return(h) },
	} {
		if err := call(); !errors.Is(err, ErrExpired) {
			t.Fatalf("%s of an expired entry: %v", name, err)
		}
	}
	if s.Valid(h) {
		t.Fatal("expired handle valid")
	}
	mustCheck(t, s) // the invariant checker sees the wiped, vacated tombstone
	st := s.Stats()
	if st.Expired != 1 || st.Entries != 1 {
		t.Fatalf("Stats after expiry: %+v", st)
	}
	if err := s.Free(h); err != nil {
		t.Fatalf("Free of expired: %v", err)
	}
	if err := s.Free(h); !errors.Is(err, ErrInvalidHandle) {
		t.Fatalf("second Free: %v", err)
	}
	if string(readAll(t, s, keep)) != "long-lived secret!" {
		t.Fatal("other entry damaged")
	}
	mustCheck(t, s)
}

func TestExpiryWhileRented(t *testing.T) {
	s := newTest(t)
	h, _ := CopyFrom(s, []byte("rented when it expires"))
	b, _ := RentSlice[byte](s, h)
	s.SetExpiry(h, time.Now().Add(10*time.Millisecond))
	time.Sleep(20 * time.Millisecond)
	if err := s.Shuffle(); err != nil { // sweeps, but leaves the rent alone
		t.Fatal(err)
	}
	if string(b) != "rented when it expires" {
		t.Fatal("rented entry wiped before its return")
	}
	if err := s.Return(h); !errors.Is(err, ErrExpired) {
		t.Fatalf("Return: %v", err)
	}
	if !allZero(b) {
		t.Fatal("expired entry not wiped at Return")
	}
	mustCheck(t, s)

	// Views: the last viewer's return wipes it.
	v, _ := CopyFrom(s, []byte("viewed"))
	v1, _ := ViewSlice[byte](s, v)
	ViewSlice[byte](s, v)
	s.SetExpiry(v, time.Now().Add(5*time.Millisecond))
	time.Sleep(10 * time.Millisecond)
	if err := s.ReturnView(v); !errors.Is(err, ErrExpired) || allZero(v1) {
		t.Fatalf("first ReturnView: %v", err)
	}
	if err := s.ReturnView(v); !errors.Is(err, ErrExpired) || !allZero(v1) {
		t.Fatalf("last ReturnView: %v", err)
	}
	mustCheck(t, s)
}

func TestDefaultTTL(t *testing.T) {
	s := newTest(t, WithDefaultTTL(20*time.Millisecond))
	var hs []Handle
	for range 50 {
		h, _ := Alloc[byte](s, 16)
		hs = append(hs, h)
	}
	time.Sleep(30 * time.Millisecond)
	if err := s.Shuffle(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Expired != 50 || st.Entries != 0 || st.LiveBytes != 0 {
		t.Fatalf("after TTL and a Shuffle: %+v", st)
	}
	for _, h := range hs {
		if _, err := Rent[byte](s, h); !errors.Is(err, ErrExpired) {
			t.Fatal(err)
		}
	}
	mustCheck(t, s)
	if _, err := New(WithDefaultTTL(-1)); !errors.Is(err, ErrInvalidOption) {
		t.Fatal(err)
	}
}

// TestFillOutlastsTTL: each call that makes an entry and fills it, given a
// default TTL shorter than the filling, fails with ErrExpired, as
// WithDefaultTTL says, and leaves no entry behind: the one it made is
// wiped and freed. The Shuffler's clock moves a millisecond at each read:
// on the system clock, a fill often ends within the tick it began in
// where the clock is coarse (Windows), and then has not outlasted even a
// TTL of a nanosecond.
func TestFillOutlastsTTL(t *testing.T) {
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key := pkcs8(t, ed)
	for _, c := range []struct {
		name string
		fill func(s *Shuffler) (Handle, error)
	}{
		{"Random", func(s *Shuffler) (Handle, error) { return Random(s, 32) }},
		{"ReadFrom", func(s *Shuffler) (Handle, error) { return ReadFrom(s, bytes.NewReader([]byte("abc")), 3) }},
		{"ReadAll", func(s *Shuffler) (Handle, error) { return ReadAll(s, bytes.NewReader([]byte("abc")), 16) }},
		{"ReadUntil", func(s *Shuffler) (Handle, error) { return ReadUntil(s, bytes.NewReader([]byte("abc\n")), '\n', 16) }},
		{"ReadPrivateKey", func(s *Shuffler) (Handle, error) { return ReadPrivateKey(s, bytes.NewReader(key)) }},
		{"CopyFrom", func(s *Shuffler) (Handle, error) { return CopyFrom(s, []byte("abc")) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			clk := newTestClock(time.Now())
			ticking := optionFunc(func(cfg *config) error {
				cfg.now = func() int64 { return clk.ns.Add(int64(time.Millisecond)) }
				return nil
			})
			s := newTest(t, WithDefaultTTL(time.Nanosecond), ticking)
			h, err := c.fill(s)
			if !errors.Is(err, ErrExpired) || !h.IsZero() {
				t.Fatalf("%v, %v; want ErrExpired and no handle", h, err)
			}
			if st := s.Stats(); st.Entries != 0 || st.LiveBytes != 0 {
				t.Fatalf("entry left behind: %+v", st)
			}
		})
	}
}

// TestCloneCopyTTLFromCopying: with WithDefaultTTL, the copy Clone makes
// gets its TTL once the source is decrypted, so a source whose decryption
// takes longer than the TTL (here a clock step while a large source is
// decrypted in flight) still clones, in every cipher. Made before the
// source was viewed, the copy expired before it was filled, and Clone
// answered ErrExpired for a live source that has no expiry.
func TestCloneCopyTTLFromCopying(t *testing.T) {
	for _, c := range allCiphers {
		t.Run(c.String(), func(t *testing.T) {
			clock := newTestClock(time.Unix(1_000_000, 0))
			s := newTest(t, WithShards(1), WithCipher(c), withClock(clock), WithDefaultTTL(time.Second))
			h, err := Alloc[byte](s, flightSize)
			if err != nil {
				t.Fatal(err)
			}
			want := setBytes(t, s, h, 7)
			if err := s.SetExpiry(h, time.Time{}); err != nil { // h never expires
				t.Fatal(err)
			}
			src, stepped := h.slot(), false
			inFlight = func(_ *shard, i uint32) {
				if i == src && !stepped { // the decryption, not the seal at the view's end
					stepped = true
					clock.advance(2 * time.Second)
				}
			}
			t.Cleanup(func() { inFlight = nil })
			c, err := Clone(s, h)
			inFlight = nil
			if err != nil {
				t.Fatalf("Clone of a live entry with no expiry: %v", err)
			}
			got, err := RentSlice[byte](s, c)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Error("the clone holds other bytes")
			}
			if err := s.Return(c); err != nil {
				t.Fatal(err)
			}
			if exp, err := s.Expiry(c); err != nil || !exp.Equal(clock.time().Add(time.Second)) {
				t.Errorf("the clone's expiry %v, %v; want a second from now, %v", exp, err, clock.time().Add(time.Second))
			}
			if st := s.Stats(); st.Expired != 0 {
				t.Errorf("Stats.Expired %d, want 0", st.Expired)
			}
		})
	}
}

// TestWaiterAnswersExpired: a RentContext or ViewContext waiting for an
// entry that someone else holds answers ErrExpired once the entry's
// deadline passes, whether another call finds the deadline due first or
// none comes. Nothing woke such a waiter: it slept until the holder
// returned the entry, or until its own context ended, with
// context.DeadlineExceeded, while every new call already answered
// ErrExpired.
func TestWaiterAnswersExpired(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
		set  bool
	}{
		{"SetExpiry", nil, true},
		{"WithDefaultTTL", []Option{WithDefaultTTL(100 * time.Millisecond)}, false},
	} {
		for _, kind := range []string{"rent", "view"} {
			for _, probe := range []bool{true, false} {
				name := tc.name + "/" + kind + "/nobody else"
				if probe {
					name = tc.name + "/" + kind + "/another call first"
				}
				t.Run(name, func(t *testing.T) {
					s := newTest(t, append([]Option{WithShards(1)}, tc.opts...)...)
					h, err := CopyFrom(s, []byte("0123456789abcdef"))
					if err != nil {
						t.Fatal(err)
					}
					if _, err := Rent[[16]byte](s, h); err != nil { // the holder, who keeps it
						t.Fatal(err)
					}
					if tc.set {
						if err := s.SetExpiry(h, time.Now().Add(100*time.Millisecond)); err != nil {
							t.Fatal(err)
						}
					}
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					res := make(chan error, 1)
					go func() {
						var err error
						if kind == "rent" {
							_, err = RentContext[[16]byte](ctx, s, h)
						} else {
							_, err = ViewContext[[16]byte](ctx, s, h)
						}
						res <- err
					}()
					if probe {
						time.Sleep(300 * time.Millisecond)
						if _, err := View[[16]byte](s, h); !errors.Is(err, ErrExpired) {
							t.Fatalf("View past the deadline: %v, want ErrExpired", err)
						}
					}
					select {
					case err := <-res:
						if !errors.Is(err, ErrExpired) {
							t.Fatalf("the waiter answered %v, want ErrExpired", err)
						}
					case <-time.After(3 * time.Second):
						t.Fatal("the waiter still sleeps 3 s after the entry's deadline")
					}
					if err := s.Return(h); !errors.Is(err, ErrExpired) {
						t.Fatalf("the holder's Return: %v, want ErrExpired", err)
					}
				})
			}
		}
	}
}

// TestWaiterWokenWhenFoundExpired: a waiter for a borrowed entry is woken
// as soon as a call finds the entry's deadline due, not only by its own
// timer: here the clock jumps an hour past a deadline an hour away, and a
// View of the entry, or an Alloc's sweep of the shard, finds it due.
func TestWaiterWokenWhenFoundExpired(t *testing.T) {
	for _, finder := range []string{"View", "Alloc"} {
		t.Run(finder, func(t *testing.T) {
			clk := newTestClock(time.Now())
			s := newTest(t, WithShards(1), withClock(clk))
			h, err := CopyFrom(s, []byte("0123456789abcdef"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Rent[[16]byte](s, h); err != nil {
				t.Fatal(err)
			}
			if err := s.SetExpiry(h, clk.time().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			res := make(chan error, 1)
			go func() {
				_, err := RentContext[[16]byte](context.Background(), s, h)
				res <- err
			}()
			for !waitingWriter(s, h) {
				time.Sleep(time.Millisecond)
			}
			clk.advance(2 * time.Hour)
			if finder == "View" {
				if _, err := View[[16]byte](s, h); !errors.Is(err, ErrExpired) {
					t.Fatalf("View past the deadline: %v, want ErrExpired", err)
				}
			} else if _, err := Alloc[byte](s, 16); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-res:
				if !errors.Is(err, ErrExpired) {
					t.Fatalf("the waiter answered %v, want ErrExpired", err)
				}
			case <-time.After(3 * time.Second):
				t.Fatalf("the waiter still sleeps 3 s after %s found the deadline due", finder)
			}
		})
	}
}

// waitingWriter reports whether a RentContext of h is counted as waiting.
func waitingWriter(s *Shuffler, h Handle) bool {
	sh := &s.shards[h.shard()]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.Waiters.Writers(h.id) > 0
}

// TestWaiterSeesExpirySetWhileWaiting: a deadline set, or moved earlier,
// by SetExpiry while a RentContext or ViewContext waits for the held entry
// ends the wait with ErrExpired once it passes. The waiter armed its timer
// from the deadline it read before it slept, and slept on past the new
// one until its own context ended.
func TestWaiterSeesExpirySetWhileWaiting(t *testing.T) {
	for _, first := range []time.Duration{0, time.Hour} {
		for _, kind := range []string{"rent", "view"} {
			name := kind + "/no deadline first"
			if first != 0 {
				name = kind + "/deadline moved earlier"
			}
			t.Run(name, func(t *testing.T) {
				s := newTest(t, WithShards(1))
				h, err := CopyFrom(s, []byte("0123456789abcdef"))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := Rent[[16]byte](s, h); err != nil {
					t.Fatal(err)
				}
				if first != 0 {
					if err := s.SetExpiry(h, time.Now().Add(first)); err != nil {
						t.Fatal(err)
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				res := make(chan error, 1)
				go func() {
					var err error
					if kind == "rent" {
						_, err = RentContext[[16]byte](ctx, s, h)
					} else {
						_, err = ViewContext[[16]byte](ctx, s, h)
					}
					res <- err
				}()
				for !waitingFor(s, h, kind == "rent") {
					time.Sleep(time.Millisecond)
				}
				if err := s.SetExpiry(h, time.Now().Add(50*time.Millisecond)); err != nil {
					t.Fatal(err)
				}
				if err := <-res; !errors.Is(err, ErrExpired) {
					t.Fatalf("the waiter answered %v, want ErrExpired", err)
				}
				if err := s.Return(h); !errors.Is(err, ErrExpired) {
					t.Fatalf("the holder's Return: %v, want ErrExpired", err)
				}
			})
		}
	}
}

// TestWaiterBefore1970DoesNotSpin: with the clock before 1970 and a
// deadline past 2262, the time to the deadline overflows int64. The
// waiter's timer got a negative duration, fired at once, found the entry
// not due and was armed again: a busy loop for as long as it waited.
func TestWaiterBefore1970DoesNotSpin(t *testing.T) {
	clk := newTestClock(time.Unix(-10, 0))
	var reads atomic.Int64
	s := newTest(t, WithShards(1), withClock(clk))
	s.cfg.now = func() int64 { reads.Add(1); return clk.now() }
	h, err := CopyFrom(s, []byte("0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Rent[[16]byte](s, h); err != nil {
		t.Fatal(err)
	}
	if err := s.SetExpiry(h, time.Unix(0, math.MaxInt64)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	before := reads.Load()
	if _, err := RentContext[[16]byte](ctx, s, h); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RentContext: %v, want context.DeadlineExceeded", err)
	}
	if n := reads.Load() - before; n > 20 {
		t.Fatalf("one waiter, 300 ms, its entry not due: the clock was read %d times", n)
	}
}

// TestUntil: the time to a deadline saturates instead of overflowing.
func TestUntil(t *testing.T) {
	for _, c := range []struct {
		d, now int64
		want   time.Duration
	}{
		{100, 40, 60},
		{40, 100, 0},
		{100, 100, 0},
		{math.MaxInt64, -10, math.MaxInt64},
		{math.MaxInt64, 0, math.MaxInt64},
		{math.MinInt64, math.MaxInt64, 0},
		{math.MaxInt64 - 5, -5, math.MaxInt64},
		{math.MaxInt64 - 5, -6, math.MaxInt64},
		{10, math.MinInt64, math.MaxInt64},
	} {
		if got := until(c.d, c.now); got != c.want {
			t.Errorf("until(%d, %d) = %d, want %d", c.d, c.now, got, c.want)
		}
	}
}

// waitingFor reports whether a RentContext of h (write) is counted as
// waiting, or, for a view, whether anyone waits on h's wake channel.
func waitingFor(s *Shuffler, h Handle, write bool) bool {
	if write {
		return waitingWriter(s, h)
	}
	sh := &s.shards[h.shard()]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.Waiters.Waiting(h.id)
}

// TestExpiredBorrowMismatch: an entry that expires while borrowed answers
// a call that does not match the borrow as before (ErrNotRented, and
// ErrBusy for Free) until the borrower returns it, which reports
// ErrExpired; from then on every call does, mismatched ones included.
func TestExpiredBorrowMismatch(t *testing.T) {
	for _, c := range []struct {
		name         string
		borrow       func(*Shuffler, Handle) error
		match, other func(*Shuffler, Handle) error
	}{
		{"rented", func(s *Shuffler, h Handle) error { _, err := RentSlice[byte](s, h); return err },
			(*Shuffler).Return, (*Shuffler).ReturnView},
		{"viewed", func(s *Shuffler, h Handle) error { _, err := ViewSlice[byte](s, h); return err },
			(*Shuffler).ReturnView, (*Shuffler).Return},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newTest(t)
			h, err := CopyFrom(s, []byte("expires"))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.borrow(s, h); err != nil {
				t.Fatal(err)
			}
			if err := s.SetExpiry(h, time.Now().Add(-time.Second)); err != nil {
				t.Fatal(err)
			}
			for _, step := range []struct {
				what string
				call func(*Shuffler, Handle) error
				want error
			}{
				{"mismatched return while borrowed", c.other, ErrNotRented},
				{"Free while borrowed", (*Shuffler).Free, ErrBusy},
				{"matching return", c.match, ErrExpired},
				{"mismatched return after", c.other, ErrExpired},
				{"matching return after", c.match, ErrExpired},
			} {
				if err := step.call(s, h); !errors.Is(err, step.want) {
					t.Errorf("%s: %v, want %v", step.what, err, step.want)
				}
			}
			if err := s.Free(h); err != nil {
				t.Errorf("Free after the return: %v", err)
			}
		})
	}
}
