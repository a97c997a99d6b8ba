package memshuffle

import (
	"errors"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"
)

// TestFlightEndPinnedStaleHandle: a Borrow function whose entry is
// returned and freed while it runs (here by fn itself; ReturnView and Free
// from another goroutine do the same), after which another goroutine
// allocates an entry of 16 KiB or more into the same slot. The end of the
// borrow found the slot in flight and waited on its own, stale, Handle's
// channel, which the landing, waking the new entry's, never closed: the
// Borrow never returned. It waits on the flying entry's Handle now.
func TestFlightEndPinnedStaleHandle(t *testing.T) {
	s := newTest(t, WithShards(1))
	if _, err := Alloc[byte](s, 32); err != nil { // keeps h's arena mapped after Free(h)
		t.Fatal(err)
	}
	h, err := Alloc[byte](s, 32)
	if err != nil {
		t.Fatal(err)
	}
	flying := make(chan struct{})
	land := make(chan struct{})
	t.Cleanup(func() { inFlight = nil })
	allocDone := make(chan error, 1)
	borrow := started(func() error {
		return BorrowSlice(s, h, func(b []byte) error {
			if err := s.Return(h); err != nil {
				return err
			}
			if err := s.Free(h); err != nil {
				return err
			}
			inFlight = func(*shard, uint32) {
				close(flying)
				<-land
			}
			go func() {
				nh, err := Alloc[byte](s, flightSize)
				if err == nil && nh.slot() != h.slot() {
					t.Errorf("new entry in slot %d, not %d", nh.slot(), h.slot())
				}
				allocDone <- err
			}()
			<-flying
			return nil
		})
	})
	time.Sleep(50 * time.Millisecond) // endPinned reaches awaitFlight
	close(land)
	if err := ends(t, "Alloc", allocDone); err != nil {
		t.Fatal(err)
	}
	err = ends(t, "BorrowSlice whose slot was reused by a flight", borrow)
	if !errors.Is(err, ErrInvalidHandle) {
		t.Fatalf("BorrowSlice: %v, want ErrInvalidHandle", err)
	}
}

// TestAllocOfferNoLeakInFlight: Alloc's slow path offers the region it mapped unlocked to its second
// sh.alloc (Arenas.Offer) and takes it back with TakeOffer, under one hold
// of the lock: the pending offer is one per shard. A flight in that second
// sh.alloc lets go of the lock with the offer still pending when the
// entry did not need it (the arena size it needs changed meanwhile); another
// Alloc's Offer then overwrites it, and that region is never adopted nor
// unmapped; Offer now refuses while one is pending. With entries below unlockedMin (no flights) nothing leaks.
func TestAllocOfferNoLeakInFlight(t *testing.T) {
	for _, tc := range []struct {
		name     string
		min, max int
	}{{"below unlockedMin", 4 << 10, unlockedMin - 1}, {"in flight", unlockedMin, 48 << 10}} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(WithShards(1), WithArenaSize(64<<10))
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := mrand.New(mrand.NewPCG(uint64(g), 3))
					var own []Handle
					for range 3000 {
						if len(own) > 40 || (len(own) > 0 && rng.IntN(3) == 0) {
							k := rng.IntN(len(own))
							if err := s.Free(own[k]); err != nil {
								t.Error(err)
								return
							}
							own = append(own[:k], own[k+1:]...)
							continue
						}
						h, err := Alloc[byte](s, tc.min+rng.IntN(tc.max-tc.min+1))
						if err != nil {
							t.Error(err)
							return
						}
						own = append(own, h)
					}
					for _, h := range own {
						s.Free(h)
					}
				}()
			}
			wg.Wait()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if l, u := s.aux.Locked(), s.aux.Unlocked(); l != 0 || u != 0 {
				t.Fatalf("after Close, regions that are not arenas still counted: %d bytes locked, %d unlocked (leaked mappings)", l, u)
			}
		})
	}
}

// TestCheckDuringFlightWithRentTracking: with rent tracking, the invariant check run while an Alloc or a Rent is
// in flight reports a borrowed entry without a rent record: the flight
// makes the slot StateRented, but track runs only after it lands (and
// Alloc's flight never tracks). TestFlightStress runs check during
// flights, but without rent tracking.
func TestCheckDuringFlightWithRentTracking(t *testing.T) {
	for _, op := range []string{"Alloc", "Rent"} {
		t.Run(op, func(t *testing.T) {
			s := newTest(t, WithShards(1), WithRentTracking(time.Hour))
			var big Handle
			if op == "Rent" {
				var err error
				if big, err = Alloc[byte](s, flightSize); err != nil {
					t.Fatal(err)
				}
			}
			var checkErr error
			onFirstFlight(t, func() { checkErr = s.check() })
			switch op {
			case "Alloc":
				if _, err := Alloc[byte](s, flightSize); err != nil {
					t.Fatal(err)
				}
			case "Rent":
				if _, err := RentSlice[byte](s, big); err != nil {
					t.Fatal(err)
				}
				defer s.Return(big)
			}
			if checkErr != nil {
				t.Fatalf("check during the %s's flight: %v", op, checkErr)
			}
		})
	}
}

// TestStatsDuringFlight: Stats.Rented is documented as "entries rented now (Rent, Borrow and
// their forms)"; an Alloc, or a View, in flight counts as a rent
// (alloc.go:179, rent.go:351), so a Stats call from any goroutine during
// it reports a rent nobody made (and, for the View, no view).
func TestStatsDuringFlight(t *testing.T) {
	for _, op := range []string{"Alloc", "View"} {
		t.Run(op, func(t *testing.T) {
			s := newTest(t, WithShards(1))
			var big Handle
			if op == "View" {
				var err error
				if big, err = Alloc[byte](s, flightSize); err != nil {
					t.Fatal(err)
				}
			}
			var st Stats
			onFirstFlight(t, func() { st = s.Stats() })
			if op == "Alloc" {
				if _, err := Alloc[byte](s, flightSize); err != nil {
					t.Fatal(err)
				}
			} else {
				if _, err := ViewSlice[byte](s, big); err != nil {
					t.Fatal(err)
				}
				defer s.ReturnView(big)
			}
			if st.Rented != 0 {
				t.Errorf("Stats during the %s's flight: Rented %d, Viewed %d; nothing is rented", op, st.Rented, st.Viewed)
			}
		})
	}
}
