package memshuffle

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// An entry in flight counts as borrowed, so a sweep that finds its
// deadline due meanwhile holds the deadline for the flight's end to wipe
// it. These tests make the deadline pass, and an Alloc's sweep hold it,
// while each kind of flight that can end without sealing the entry is
// under way, and check that the entry is wiped when the flight lands:
// left live with a held deadline, no later sweep, Shuffle or background
// cycle looks at it again (checkNoneDue), and the invariant check at
// cleanup refuses a held deadline on an entry nobody borrows.

// sweepWhenPassed moves clock past a deadline a second away and makes an
// Alloc and a Free, whose sweep finds the deadline due.
func sweepWhenPassed(t *testing.T, s *Shuffler, clock *testClock) error {
	t.Helper()
	clock.advance(2 * time.Second)
	h, err := Alloc[byte](s, 16)
	if err == nil {
		err = s.Free(h)
	}
	return err
}

// expiredEverywhere checks that h answers ErrExpired and that nothing is
// left due after a Shuffle and a few Allocs.
func expiredEverywhere(t *testing.T, s *Shuffler, h Handle, clock *testClock) {
	t.Helper()
	if err := s.Shuffle(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		h2, err := Alloc[byte](s, 16)
		if err != nil {
			t.Fatal(err)
		}
		_ = s.Free(h2)
	}
	if err := s.checkNoneDue(clock.now()); err != nil {
		t.Errorf("after Shuffle and Allocs: %v (a live entry with a held deadline: no sweep wipes it)", err)
	}
	if _, err := s.Size(h); !errors.Is(err, ErrExpired) {
		t.Errorf("the entry past its deadline: %v, want ErrExpired", err)
	}
	if got := s.Stats().Expired; got != 1 {
		t.Errorf("Stats.Expired %d, want 1", got)
	}
}

// expiringInFlight makes a one-shard Shuffler of cipher c on a test clock
// and a large entry, filled with seed's pattern unless seed is negative,
// whose deadline is a second away.
func expiringInFlight(t *testing.T, c Cipher, seed int) (*Shuffler, Handle, *testClock) {
	t.Helper()
	clock := newTestClock(time.Unix(1_000_000, 0))
	s := newTest(t, WithShards(1), WithCipher(c), withClock(clock))
	h, err := Alloc[byte](s, flightSize)
	if err != nil {
		t.Fatal(err)
	}
	if seed >= 0 {
		setBytes(t, s, h, seed)
	}
	if err := s.SetExpiry(h, clock.time().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	return s, h, clock
}

// refuseMapsInFlight makes every mmap fail from the first one made while
// an entry of s's only shard is in flight, which first runs sweep. It
// reports whether that mapping came.
func refuseMapsInFlight(t *testing.T, s *Shuffler, sweep func()) *atomic.Bool {
	sh := &s.shards[0]
	var fired, inside atomic.Bool
	osmem.SetFault(func(o osmem.Op) error {
		if inside.Load() || o != osmem.OpMap || len(sh.flight.slots) == 0 && !fired.Load() {
			return nil
		}
		if fired.CompareAndSwap(false, true) {
			inside.Store(true)
			sweep()
			inside.Store(false)
		}
		return osmem.ErrInjected
	})
	t.Cleanup(func() { osmem.SetFault(nil) })
	return &fired
}

// TestOpenInFlightTamperedExpires: a large authenticated entry that fails
// authentication in flight (Rent and View) is wiped when it lands if its
// deadline was found due meanwhile.
func TestOpenInFlightTamperedExpires(t *testing.T) {
	for _, c := range []Cipher{AES256GCM, ChaCha20Poly1305} {
		for _, view := range []bool{false, true} {
			name := c.String() + "/rent"
			if view {
				name = c.String() + "/view"
			}
			t.Run(name, func(t *testing.T) {
				s, h, clock := expiringInFlight(t, c, 3)
				extentOf(s, h)[10] ^= 1
				var once sync.Once
				var sweepErr error
				inFlight = func(*shard, uint32) { once.Do(func() { sweepErr = sweepWhenPassed(t, s, clock) }) }
				t.Cleanup(func() { inFlight = nil })
				var err error
				if view {
					_, err = ViewSlice[byte](s, h)
				} else {
					_, err = RentSlice[byte](s, h)
				}
				inFlight = nil
				if sweepErr != nil {
					t.Fatal(sweepErr)
				}
				if !errors.Is(err, ErrTampered) {
					t.Fatalf("borrow of the tampered entry: %v, want ErrTampered", err)
				}
				expiredEverywhere(t, s, h, clock)
			})
		}
	}
}

// TestOpenInFlightRefusedExpires: a large authenticated Rent whose flight
// the system refuses memory for (the backup buffer it maps with the lock
// let go) fails, and the entry, whose deadline was found due meanwhile, is
// wiped rather than left live.
func TestOpenInFlightRefusedExpires(t *testing.T) {
	for _, c := range []Cipher{AES256GCM, ChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			s, h, clock := expiringInFlight(t, c, -1)
			var sweepErr error
			fired := refuseMapsInFlight(t, s, func() { sweepErr = sweepWhenPassed(t, s, clock) })
			_, err := RentSlice[byte](s, h)
			osmem.SetFault(nil)
			if !fired.Load() {
				t.Fatal("no mapping in flight")
			}
			if sweepErr != nil {
				t.Fatal(sweepErr)
			}
			if !errors.Is(err, ErrExpired) {
				t.Fatalf("Rent: %v, want ErrExpired", err)
			}
			expiredEverywhere(t, s, h, clock)
		})
	}
}

// TestRotationInFlightFallbackExpires: a rotation's re-encryption in
// flight of a large authenticated entry finds no memory for its new place
// and falls back to the lock; the entry, whose deadline was found due
// while the lock was let go, is wiped instead of re-encrypted and left
// live.
func TestRotationInFlightFallbackExpires(t *testing.T) {
	for _, c := range []Cipher{AES256GCM, ChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			s, h, clock := expiringInFlight(t, c, 4) // filled: the backup buffer grows too
			var sweepErr error
			fired := refuseMapsInFlight(t, s, func() { sweepErr = sweepWhenPassed(t, s, clock) })
			if err := s.RotateKey(nil, nil); err != nil {
				t.Fatalf("RotateKey: %v", err)
			}
			osmem.SetFault(nil)
			if !fired.Load() {
				t.Fatal("no mapping in flight")
			}
			if sweepErr != nil {
				t.Fatal(sweepErr)
			}
			expiredEverywhere(t, s, h, clock)
		})
	}
}

// TestRentInFlightPastDeadline: a Rent that decrypts a large entry in
// flight while its deadline passes, and is found due, fails with
// ErrExpired, the plaintext wiped, instead of handing it out past the
// deadline for the Return to wipe.
func TestRentInFlightPastDeadline(t *testing.T) {
	for _, c := range allCiphers {
		t.Run(c.String(), func(t *testing.T) {
			s, h, clock := expiringInFlight(t, c, 5)
			var once sync.Once
			var sweepErr error
			inFlight = func(*shard, uint32) { once.Do(func() { sweepErr = sweepWhenPassed(t, s, clock) }) }
			t.Cleanup(func() { inFlight = nil })
			_, err := RentSlice[byte](s, h)
			inFlight = nil
			if sweepErr != nil {
				t.Fatal(sweepErr)
			}
			if !errors.Is(err, ErrExpired) {
				if err == nil {
					s.Return(h)
				}
				t.Fatalf("Rent of an entry whose deadline was found due while it decrypted: %v, want ErrExpired", err)
			}
			expiredEverywhere(t, s, h, clock)
		})
	}
}
