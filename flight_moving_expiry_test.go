package memshuffle

import (
	"errors"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
	"sync/atomic"
)

// fillCur allocates entries of n bytes into shard 0 until its current
// arena has less than n bytes of bump space left, so that the next moving
// Return of an n-byte entry needs a new arena.
func fillCur(t *testing.T, s *Shuffler, m model, n int) {
	t.Helper()
	sh := &s.shards[0]
	for j := 0; ; j++ {
		sh.mu.Lock()
		c := sh.Arenas.Cur()
		full := c != nil && !sh.Arenas.Fits(c, n+sh.Overhead(), 16)
		sh.mu.Unlock()
		if full {
			return
		}
		allocPattern(t, s, m, n, 100+j)
		if j > 1000 {
			t.Fatal("current arena never fills")
		}
	}
}

// TestMovingReturnFailedMoveExpires: a small entry's moving Return
// that needs a new arena goes in flight (sealMovedUnlocked) and lets go of
// the shard lock to map it. When that mapping is refused, seal falls back
// to encrypting in place, and looks at the deadline again first: one that
// passed meanwhile, and that a sweep (here an Alloc's) found due and held
// for the Return to wipe, makes the Return wipe the entry and report
// ErrExpired. Without that look, the entry was left live under a held
// deadline, which no sweep (Shuffle included) ever wipes.
func TestMovingReturnFailedMoveExpires(t *testing.T) {
	for _, c := range []Cipher{AES256CTR, AES256GCM} {
		t.Run(c.String(), func(t *testing.T) {
			clock := newTestClock(time.Unix(1_000_000, 0))
			s := newTest(t, WithShards(1), WithArenaSize(4096), WithShuffleOnBorrowReturn(true), WithCipher(c), withClock(clock))
			m := model{}
			h := allocPattern(t, s, m, 1000, 1)
			delete(m, h)
			fillCur(t, s, m, 1000)
			if err := s.SetExpiry(h, clock.time().Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := RentSlice[byte](s, h); err != nil {
				t.Fatal(err)
			}
			var once atomic.Bool
			var allocErr error
			osmem.SetFault(func(o osmem.Op) error {
				if o != osmem.OpMap || !once.CompareAndSwap(false, true) {
					return nil
				}
				// The shard is unlocked: the deadline passes, and an Alloc
				// sweeps (sweepSome) and holds the borrowed entry's deadline.
				clock.advance(2 * time.Second)
				var h2 Handle
				h2, allocErr = Alloc[byte](s, 16)
				if allocErr == nil {
					_ = s.Free(h2)
				}
				return osmem.ErrInjected // the new arena is refused
			})
			err := s.Return(h)
			osmem.SetFault(nil)
			if !once.Load() {
				t.Fatal("the Return mapped nothing in flight")
			}
			if allocErr != nil {
				t.Fatal(allocErr)
			}
			if !errors.Is(err, ErrExpired) {
				t.Errorf("Return of an entry whose deadline passed (and was found due) during the Return: err = %v, want ErrExpired", err)
			}
			if err := s.Shuffle(); err != nil {
				t.Fatal(err)
			}
			if err := s.checkNoneDue(clock.now()); err != nil {
				t.Errorf("after Shuffle: %v (its deadline is held on a live entry: no sweep wipes it)", err)
			}
		})
	}
}

// TestMovingReturnUnmapAsideExpires: the entry's deadline passes while
// unmapAside has it in flight (the arena the move emptied being unmapped
// with the shard unlocked); the Return must report ErrExpired and wipe
// it, and calls given its Handle meanwhile wait rather than see ErrBusy.
func TestMovingReturnUnmapAsideExpires(t *testing.T) {
	for _, view := range []bool{false, true} {
		for _, c := range []Cipher{AES256CTR, AES256GCM, ChaCha20Poly1305} {
			name := c.String()
			if view {
				name += "/view"
			}
			t.Run(name, func(t *testing.T) {
				clock := newTestClock(time.Unix(1_000_000, 0))
				s := newTest(t, WithShards(1), WithArenaSize(4096), WithShuffleOnBorrowReturn(true), WithCipher(c), withClock(clock))
				m := model{}
				// h alone in the first arena; then a new current arena.
				h := allocPattern(t, s, m, 3000, 1)
				delete(m, h)
				for j := range 3 {
					allocPattern(t, s, m, 3000, 10+j)
				}
				if err := s.SetExpiry(h, clock.time().Add(time.Second)); err != nil {
					t.Fatal(err)
				}
				if view {
					if _, err := ViewSlice[byte](s, h); err != nil {
						t.Fatal(err)
					}
				} else if _, err := RentSlice[byte](s, h); err != nil {
					t.Fatal(err)
				}
				var once atomic.Bool
				busy := make(chan error, 1)
				osmem.SetFault(func(o osmem.Op) error {
					if o != osmem.OpUnmap || !once.CompareAndSwap(false, true) {
						return nil
					}
					if !s.shards[0].mu.TryLock() {
						t.Error("unmap under the shard lock")
					} else {
						s.shards[0].mu.Unlock()
					}
					clock.advance(2 * time.Second)
					go func() {
						_, err := ViewSlice[byte](s, h)
						busy <- err
					}()
					time.Sleep(50 * time.Millisecond)
					select {
					case err := <-busy:
						t.Errorf("a View during the Return's unlocked window answered at once: %v", err)
						busy <- err
					default:
					}
					return nil
				})
				var err error
				if view {
					err = s.ReturnView(h)
				} else {
					err = s.Return(h)
				}
				osmem.SetFault(nil)
				if !once.Load() {
					t.Skip("the Return unmapped nothing")
				}
				if !errors.Is(err, ErrExpired) {
					t.Errorf("Return: %v, want ErrExpired", err)
				}
				if err := <-busy; !errors.Is(err, ErrExpired) {
					t.Errorf("the View that waited: %v, want ErrExpired", err)
				}
				st := s.Stats()
				if st.Rented != 0 || st.Viewed != 0 {
					t.Errorf("Stats Rented %d Viewed %d", st.Rented, st.Viewed)
				}
				verifyModel(t, s, m)
			})
		}
	}
}

// TestExpiredReturnUnmapsUnlocked: a moving Return of an entry whose
// deadline has passed wipes it (sealExpired), and an arena that leaves
// empty (not current; 16 MiB and more for an oversize entry) is unmapped
// with the shard unlocked, as the entry answers ErrExpired by then. For
// "in-flight", the deadline passes while sealMovedUnlocked maps the
// entry's new dedicated arena, which is unmapped again, unlocked too.
// Under the lock, each held the shard's other entries for milliseconds.
func TestExpiredReturnUnmapsUnlocked(t *testing.T) {
	for _, tc := range []struct {
		name     string
		size     int
		inFlight bool
	}{
		{"small", 3000, false},
		{"oversize", store.MaxArenaSize + 5, false},
		{"oversize/in-flight", store.MaxArenaSize + 5, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newTestClock(time.Unix(1_000_000, 0))
			s := newTest(t, WithShards(1), WithArenaSize(4096), WithShuffleOnBorrowReturn(true), withClock(clock))
			m := model{}
			h := allocPattern(t, s, m, tc.size, 1)
			delete(m, h)
			for j := range 3 { // h's arena is not the current one
				allocPattern(t, s, m, 3000, 10+j)
			}
			if err := s.SetExpiry(h, clock.time().Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := RentSlice[byte](s, h); err != nil {
				t.Fatal(err)
			}
			if !tc.inFlight {
				clock.advance(2 * time.Second)
			}
			var advanced atomic.Bool
			asked, held := lockedSystemCallsThen(t, &s.shards[0], nil, func(o osmem.Op) {
				if tc.inFlight && o == osmem.OpMap && advanced.CompareAndSwap(false, true) {
					clock.advance(2 * time.Second)
				}
			}, osmem.OpUnmap)
			err := s.Return(h)
			osmem.SetFault(nil)
			if !errors.Is(err, ErrExpired) {
				t.Fatalf("Return: %v, want ErrExpired", err)
			}
			if held.Load() != 0 {
				t.Errorf("the expiring Return unmapped %d of %d regions with the shard lock held", held.Load(), asked.Load())
			}
			verifyModel(t, s, m)
		})
	}
}

// TestMovingReturnUnmapAsideClose: Close started while unmapAside has
// the entry in flight waits for it; an unmap refused there is kept and
// retried, so nothing stays locked after Close.
func TestMovingReturnUnmapAsideClose(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		for _, c := range []Cipher{AES256CTR, AES256GCM} {
			t.Run(c.String()+map[bool]string{true: "/refused", false: ""}[refuse], func(t *testing.T) {
				s := newTest(t, WithShards(1), WithArenaSize(4096), WithShuffleOnBorrowReturn(true), WithCipher(c))
				m := model{}
				h := allocPattern(t, s, m, 3000, 1)
				for j := range 3 {
					allocPattern(t, s, m, 3000, 10+j)
				}
				if _, err := RentSlice[byte](s, h); err != nil {
					t.Fatal(err)
				}
				var once atomic.Bool
				closed := make(chan error, 1)
				osmem.SetFault(func(o osmem.Op) error {
					if o != osmem.OpUnmap || !once.CompareAndSwap(false, true) {
						return nil
					}
					go func() { closed <- s.Close() }()
					time.Sleep(30 * time.Millisecond)
					select {
					case <-closed:
						t.Error("Close finished with an entry in flight")
					default:
					}
					if refuse {
						return osmem.ErrInjected
					}
					return nil
				})
				err := s.Return(h)
				if err != nil {
					t.Fatal(err)
				}
				cerr := <-closed
				osmem.SetFault(nil)
				if !once.Load() {
					t.Skip("nothing unmapped")
				}
				t.Logf("Close: %v", cerr)
				if st := s.Stats(); st.LockedBytes != 0 || st.UnlockedBytes != 0 {
					t.Errorf("after Close: LockedBytes %d UnlockedBytes %d", st.LockedBytes, st.UnlockedBytes)
				}
				if n, _ := osmem.UnmapRefused(); n != 0 {
					t.Errorf("%d refused regions left mapped", n)
				}
			})
		}
	}
}

// TestRotationInFlightNoBackup: a rotation's re-encryption of a large
// authenticated entry in flight finds no room for the new place it
// decrypts into, and no backup buffer for decrypting in place either (a
// Rent in flight gave it back to grow it, and the system refused the
// larger one; here the test gives it back). The entry stays under the old
// key, readable, the rotation stops with the refusal (it finishes once
// memory is back), and nothing is counted under the new key that is not
// under it: an open that failed for want of memory was taken for a failed
// authentication, the entry counted under the new key and unreadable.
func TestRotationInFlightNoBackup(t *testing.T) {
	for _, c := range []Cipher{AES256GCM, ChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			s := newTest(t, WithShards(1), WithCipher(c))
			sh := &s.shards[0]
			m := model{}
			allocPattern(t, s, m, 100, 1) // re-encrypted in the first hold
			big := allocPattern(t, s, m, store.MaxArenaSize+5, 2)
			var armed, refused atomic.Bool
			afterRotationHold = func() { armed.Store(true) }
			t.Cleanup(func() { afterRotationHold = nil })
			osmem.SetFault(func(o osmem.Op) error {
				if !armed.Load() || o != osmem.OpMap {
					return nil
				}
				if refused.CompareAndSwap(false, true) {
					sh.mu.Lock() // the flight maps with the shard unlocked
					if sh.backup != nil {
						sh.dropBackup()
					}
					sh.mu.Unlock()
				}
				return osmem.ErrInjected
			})
			t.Cleanup(func() { osmem.SetFault(nil) })
			err := s.RotateKey(nil, nil)
			osmem.SetFault(nil)
			if !refused.Load() {
				t.Fatal("the rotation mapped nothing after its first hold")
			}
			if !errors.Is(err, ErrRotationIncomplete) {
				t.Fatalf("RotateKey with memory refused: %v, want ErrRotationIncomplete", err)
			}
			verifyModel(t, s, m)
			if err := s.RotateKey(nil, nil); err != nil {
				t.Fatalf("RotateKey once memory is back: %v", err)
			}
			verifyModel(t, s, m)
			holdsValue(t, s, big, m[big])
		})
	}
}
