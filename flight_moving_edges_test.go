package memshuffle

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// TestMovingReturnFlightChaos: while a moving Return is in flight, with the
// shard unlocked (at=flight: the inFlight hook, new place reserved, before
// the XOR; at=map: the mapping of the new arena, before the reservation;
// at=unmap: the unmapping of the arena the move emptied, after Settle),
// everything that works on the rest of the shard runs: the invariant
// check, Shuffle, frees that empty arenas, allocations that map new ones,
// expiries, a background cycle. The entry must land intact, the check
// hold, and nothing else change.
func TestMovingReturnFlightChaos(t *testing.T) {
	for _, c := range []Cipher{AES256CTR, AES256GCM} {
		for _, at := range []string{"flight", "map", "unmap"} {
			for _, size := range []int{unlockedMin, flightSize + 5, store.MaxArenaSize + 5} {
				if size == unlockedMin && at != "flight" {
					continue // it fits the current arena: nothing is mapped or unmapped
				}
				views := []bool{false, true}
				if c != AES256CTR {
					views = shortOr(views, views[:1]) // views take the same flight
				}
				for _, view := range views {
					t.Run(fmt.Sprintf("%v/at=%s/size=%d/view=%v", c, at, size, view), func(t *testing.T) {
						skipOversizeUnderRace(t, size)
						testMovingChaos(t, c, at, size, view)
					})
				}
			}
		}
	}
}

func testMovingChaos(t *testing.T, c Cipher, at string, size int, view bool) {
	clk := newTestClock(time.Now())
	s := newTest(t, WithShards(1), WithShuffleOnBorrowReturn(true), withClock(clk), WithCipher(c))
	sh := &s.shards[0]
	m := model{}
	var smalls []Handle
	for j := range 300 {
		smalls = append(smalls, allocPattern(t, s, m, 256, j))
	}
	big := allocPattern(t, s, m, size, 7)
	borrow, end := RentSlice[byte], s.Return
	if view {
		borrow, end = ViewSlice[byte], s.ReturnView
	}
	if _, err := borrow(s, big); err != nil {
		t.Fatal(err)
	}
	chaos := func() {
		step := func(what string) {
			if err := s.check(); err != nil {
				t.Errorf("at %s, after %s: %v", at, what, err)
			}
		}
		step("nothing")
		if err := s.Shuffle(); err != nil {
			t.Error(err)
		}
		step("Shuffle")
		for j, h := range smalls {
			if j%2 == 0 {
				if err := s.Free(h); err != nil {
					t.Error(err)
				}
				delete(m, h)
			}
		}
		step("frees")
		for j := range 200 {
			smalls = append(smalls, allocPattern(t, s, m, 300+j, j))
		}
		step("allocs")
		for j, h := range smalls {
			if _, ok := m[h]; ok && j%3 == 1 {
				if err := s.SetExpiry(h, clk.time().Add(time.Second)); err != nil {
					t.Error(err)
				}
				delete(m, h)
			}
		}
		clk.advance(2 * time.Second)
		if err := s.Shuffle(); err != nil {
			t.Error(err)
		}
		step("expiries and Shuffle")
		s.cycle(t.Context(), &pacer{})
		step("a background cycle")
		for j, h := range smalls {
			if _, ok := m[h]; ok && j%5 == 0 {
				if err := s.Free(h); err != nil {
					t.Error(err)
				}
				delete(m, h)
			}
		}
		for range 4 {
			if err := s.Shuffle(); err != nil {
				t.Error(err)
			}
		}
		step("frees and Shuffles")
	}
	var ran atomic.Bool
	var armed atomic.Bool
	switch at {
	case "flight":
		onFirstFlight(t, func() { ran.Store(true); chaos() })
	default:
		want := osmem.OpMap
		if at == "unmap" {
			want = osmem.OpUnmap
		}
		osmem.SetFault(func(o osmem.Op) error {
			if o == want && armed.Load() && !ran.Load() {
				if !sh.mu.TryLock() {
					return nil // under the lock: not this phase
				}
				sh.mu.Unlock()
				ran.Store(true)
				chaos()
			}
			return nil
		})
		t.Cleanup(func() { osmem.SetFault(nil) })
	}
	armed.Store(true)
	if err := end(big); err != nil {
		t.Fatal(err)
	}
	armed.Store(false)
	osmem.SetFault(nil)
	if !ran.Load() {
		t.Fatalf("no %s phase with the shard unlocked", at)
	}
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
	for _, h := range smalls {
		if _, ok := m[h]; !ok {
			_ = s.Free(h)
		}
	}
	verifyModel(t, s, m)
	if !bytes.Equal(readAll(t, s, big), m[big]) {
		t.Fatal("big entry changed")
	}
}

// TestMovingReturnFaults: refused maps, locks (LockStrict) and
// unmaps during a moving Return in flight leave the entry intact and the
// invariants whole, with nothing mapped that is not accounted for.
func TestMovingReturnFaults(t *testing.T) {
	for _, size := range []int{flightSize + 5, store.MaxArenaSize + 5} {
		for _, op := range []osmem.Op{osmem.OpMap, osmem.OpLock, osmem.OpUnmap} {
			t.Run(fmt.Sprintf("%d/%v", size, op), func(t *testing.T) {
				needLockRoom(t, 4*size)
				s := newTest(t, WithShards(1), WithShuffleOnBorrowReturn(true), WithLockMode(LockStrict))
				m := model{}
				big := allocPattern(t, s, m, size, 5)
				b, err := RentSlice[byte](s, big)
				if err != nil {
					t.Fatal(err)
				}
				was := &b[0]
				osmem.SetFault(func(o osmem.Op) error {
					if o == op {
						return osmem.ErrInjected
					}
					return nil
				})
				t.Cleanup(func() { osmem.SetFault(nil); osmem.UnmapRefused() })
				err = s.Return(big)
				osmem.SetFault(nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.check(); err != nil {
					t.Fatal(err)
				}
				b, err = RentSlice[byte](s, big)
				if err != nil {
					t.Fatal(err)
				}
				moved := &b[0] != was
				if !bytes.Equal(b, m[big]) {
					t.Fatal("entry changed")
				}
				if err := s.Return(big); err != nil {
					t.Fatal(err)
				}
				t.Logf("moved=%v", moved)
				verifyModel(t, s, m)
			})
		}
	}
}

// TestMovingReturnExpiresInFlight: the entry's deadline passes while its
// moving Return is in flight: the Return reports ErrExpired, the entry is
// wiped (the check at cleanup reads every byte), its handle answers
// ErrExpired.
func TestMovingReturnExpiresInFlight(t *testing.T) {
	for _, size := range []int{unlockedMin, flightSize + 5, store.MaxArenaSize + 5} {
		for _, pinned := range []bool{false, true} {
			t.Run(fmt.Sprintf("size=%d/pinned=%v", size, pinned), func(t *testing.T) {
				clk := newTestClock(time.Now())
				s := newTest(t, WithShards(1), WithShuffleOnBorrowReturn(true), withClock(clk))
				h, err := Alloc[byte](s, size)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.SetExpiry(h, clk.time().Add(time.Second)); err != nil {
					t.Fatal(err)
				}
				// Set once the entry is rented: its decryption may be a
				// flight too, and a deadline passed there fails the Rent
				// (TestRentInFlightPastDeadline).
				passInFlight := func() {
					onFirstFlight(t, func() {
						clk.advance(2 * time.Second)
						// Others meanwhile: a lookup of h waits, a sweep passes it.
						if err := s.Shuffle(); err != nil {
							t.Error(err)
						}
					})
				}
				if pinned {
					err = BorrowSlice(s, h, func(b []byte) error { b[0] = 1; passInFlight(); return nil })
				} else {
					if _, err = RentSlice[byte](s, h); err != nil {
						t.Fatal(err)
					}
					passInFlight()
					err = s.Return(h)
				}
				if !errors.Is(err, ErrExpired) {
					t.Fatalf("end of borrow: %v, want ErrExpired", err)
				}
				if _, err := RentSlice[byte](s, h); !errors.Is(err, ErrExpired) {
					t.Fatalf("Rent after: %v", err)
				}
				if err := s.check(); err != nil {
					t.Fatal(err)
				}
				if err := s.Free(h); err != nil {
					t.Fatal(err)
				}
				if st := s.Stats(); st.Entries != 0 || st.Rented != 0 {
					t.Fatalf("stats after: %+v", st)
				}
			})
		}
	}
}

// TestMovingReturnRotateFreeWait: a key rotation and a Free of the same
// handle started during the flight wait for it; the entry lands, is
// rotated, then freed.
func TestMovingReturnRotateFreeWait(t *testing.T) {
	for _, size := range []int{unlockedMin, store.MaxArenaSize + 5} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			s := newTest(t, WithShards(2), WithShuffleOnBorrowReturn(true))
			m := model{}
			for j := range 50 {
				allocPattern(t, s, m, 64+j*1000, j)
			}
			big := allocPattern(t, s, m, size, 9)
			if _, err := RentSlice[byte](s, big); err != nil {
				t.Fatal(err)
			}
			var rot, free <-chan error
			onFirstFlight(t, func() {
				rot = started(func() error {
					var k [32]byte
					var salt [8]byte
					k[0], salt[0] = 1, 2
					return s.RotateKey(&k, &salt)
				})
				free = started(func() error { return s.Free(big) })
				time.Sleep(20 * time.Millisecond)
			})
			if err := s.Return(big); err != nil {
				t.Fatal(err)
			}
			if err := ends(t, "RotateKey", rot); err != nil {
				t.Fatal(err)
			}
			if err := ends(t, "Free", free); err != nil {
				t.Fatal(err)
			}
			delete(m, big)
			verifyModel(t, s, m)
		})
	}
}

// TestRotationTamperedLargeEntry: an entry larger than a rotation's batch
// that fails authentication when the rotation re-encrypts it in flight
// (rekeyAEADInFlight) stays exactly as found, is counted in
// Stats.Tampered, and keeps failing under the new key; the rotation
// itself succeeds, and the new place it decrypted into is wiped and given
// back (the invariant check).
func TestRotationTamperedLargeEntry(t *testing.T) {
	for _, c := range []Cipher{AES256GCM, ChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			s := newTest(t, WithShards(1), WithCipher(c))
			m := model{}
			allocPattern(t, s, m, 1000, 1)
			h := allocPattern(t, s, m, 200<<10, 2)
			delete(m, h)
			ext := extentOf(s, h)
			ext[len(ext)/2] ^= 0x10
			found := bytes.Clone(ext)
			flights := onFirstFlight(t, func() {})
			if err := s.RotateKey(nil, nil); err != nil {
				t.Fatal(err)
			}
			if flights.Load() == 0 {
				t.Fatal("the rotation put nothing in flight")
			}
			if !bytes.Equal(extentOf(s, h), found) {
				t.Fatal("the rotation changed the tampered entry")
			}
			if got := s.Stats().Tampered; got != 1 {
				t.Errorf("Stats.Tampered = %d after the rotation, want 1", got)
			}
			if _, err := RentSlice[byte](s, h); !errors.Is(err, ErrTampered) {
				t.Fatalf("Rent after the rotation: %v, want ErrTampered", err)
			}
			mustCheck(t, s)
			if err := s.Free(h); err != nil {
				t.Fatal(err)
			}
			verifyModel(t, s, m)
		})
	}
}

// TestRotationWaitsForOpenInFlight: a rotation pass does not go by an
// entry that a Rent is decrypting in flight in an authenticated mode. When
// that Rent finds no room for the new place (here the system refuses the
// arena it needs), it decrypts the entry where it is, under the key the
// entry is under: the old one, which a pass that had gone by would no
// longer count, making the Rent fail with ErrTampered and leaving the
// entry to be wiped with the old key.
func TestRotationWaitsForOpenInFlight(t *testing.T) {
	s := newTest(t, WithShards(1), WithCipher(AES256GCM))
	m := model{}
	allocPattern(t, s, m, 32, 1)
	big := allocPattern(t, s, m, store.MaxArenaSize+5, 2)

	// The rotation switches keys, re-encrypts the small entry and stops
	// before the large one, until the Rent below is in flight.
	paused, resume := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	afterRotationHold = func() {
		if once.CompareAndSwap(false, true) {
			close(paused)
			<-resume
		}
	}
	t.Cleanup(func() { afterRotationHold = nil })
	rotated := started(func() error { return s.RotateKey(nil, nil) })
	<-paused

	var refused atomic.Bool
	osmem.SetFault(func(o osmem.Op) error {
		if o == osmem.OpMap && refused.CompareAndSwap(false, true) {
			close(resume)
			time.Sleep(100 * time.Millisecond) // the pass goes on meanwhile
			return osmem.ErrInjected
		}
		return nil
	})
	t.Cleanup(func() { osmem.SetFault(nil) })
	b, err := RentSlice[byte](s, big)
	osmem.SetFault(nil)
	if err != nil {
		t.Fatalf("Rent during the rotation: %v", err)
	}
	if !refused.Load() {
		t.Fatal("the Rent mapped no arena for the new place")
	}
	if !bytes.Equal(b, m[big]) {
		t.Fatal("the entry does not decrypt to its value")
	}
	if err := s.Return(big); err != nil {
		t.Fatal(err)
	}
	if err := ends(t, "RotateKey", rotated); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, s)
	verifyModel(t, s, m)
}
