package memshuffle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rotStressRounds is how many operations each worker of the rotation
// stress tests runs; MEMSHUFFLE_ROT_STRESS raises it for a longer hunt.
func rotStressRounds() int {
	if v, err := strconv.Atoi(os.Getenv("MEMSHUFFLE_ROT_STRESS")); err == nil && v > 0 {
		return v
	}
	return 300
}

// rotFill writes the pattern of (id, version) into b.
func rotFill(b []byte, id, version int) {
	for i := range b {
		b[i] = byte(id*131 + version*17 + i*7 + 1)
	}
}

// rotWorker owns a few entries, whose contents only it changes, and checks
// them on every borrow while rotations, moves and expiries go on around it.
//
// With pinnedOnly it borrows only through the Borrow functions, whose
// memory stays mapped across a Close; a slice from Rent or View faults
// when used after Close, by design.
func rotWorker(ctx context.Context, s *Shuffler, id int, rounds int, clock *testClock, pinnedOnly bool) error {
	rng := mrand.New(mrand.NewPCG(uint64(id), 7))
	type entry struct {
		h       Handle
		version int
	}
	sizes := []int{1, 16, 17, 100, 1019, 4096, 70000}
	var es []entry
	mk := func() error {
		n := sizes[rng.IntN(len(sizes))]
		src := make([]byte, n)
		rotFill(src, id, 0)
		h, err := CopyFrom(s, src)
		if err != nil {
			return fmt.Errorf("CopyFrom: %w", err)
		}
		es = append(es, entry{h: h})
		return nil
	}
	for range 4 {
		if err := mk(); err != nil {
			return err
		}
	}
	want := func(e entry, b []byte) error {
		exp := make([]byte, len(b))
		rotFill(exp, id, e.version)
		if !bytes.Equal(exp, b) {
			return fmt.Errorf("worker %d: entry %v holds other bytes than version %d", id, e.h, e.version)
		}
		return nil
	}
	for r := range rounds {
		if ctx.Err() != nil {
			return nil
		}
		k := rng.IntN(len(es))
		e := &es[k]
		op := rng.IntN(7)
		if pinnedOnly && op <= 2 {
			op = 3
		}
		switch op {
		case 0, 1: // Rent, check, write the next version, Return
			b, err := RentSlice[byte](s, e.h)
			if err != nil {
				return fmt.Errorf("worker %d round %d RentSlice: %w", id, r, err)
			}
			if err := want(*e, b); err != nil {
				s.Return(e.h)
				return err
			}
			e.version++
			rotFill(b, id, e.version)
			runtime.Gosched()
			if err := s.Return(e.h); err != nil {
				return fmt.Errorf("worker %d Return: %w", id, err)
			}
		case 2: // View twice, check, ReturnView twice
			v, err := ViewSlice[byte](s, e.h)
			if err != nil {
				return fmt.Errorf("worker %d ViewSlice: %w", id, err)
			}
			v2, err := ViewSlice[byte](s, e.h)
			if err != nil {
				return fmt.Errorf("worker %d second ViewSlice: %w", id, err)
			}
			err = errors.Join(want(*e, v), want(*e, v2))
			runtime.Gosched()
			err = errors.Join(err, s.ReturnView(e.h), s.ReturnView(e.h))
			if err != nil {
				return err
			}
		case 3: // Borrow functions
			err := BorrowViewSlice(s, e.h, func(b []byte) error { return want(*e, b) })
			if err == nil {
				err = BorrowSlice(s, e.h, func(b []byte) error {
					if err := want(*e, b); err != nil {
						return err
					}
					e.version++
					rotFill(b, id, e.version)
					return nil
				})
			}
			if err != nil {
				return fmt.Errorf("worker %d Borrow: %w", id, err)
			}
		case 4: // Clone, check the copy, free it
			c, err := Clone(s, e.h)
			if err != nil {
				return fmt.Errorf("worker %d Clone: %w", id, err)
			}
			err = BorrowViewSlice(s, c, func(b []byte) error { return want(*e, b) })
			if err := errors.Join(err, s.Free(c)); err != nil {
				return fmt.Errorf("worker %d clone: %w", id, err)
			}
		case 5: // Replace the entry
			if err := s.Free(e.h); err != nil {
				return fmt.Errorf("worker %d Free: %w", id, err)
			}
			es = append(es[:k], es[k+1:]...)
			if err := mk(); err != nil {
				return err
			}
		case 6: // An entry that expires, at rest or while borrowed
			h, err := Random(s, 1+rng.IntN(200))
			if err != nil {
				return fmt.Errorf("worker %d Random: %w", id, err)
			}
			if err := s.SetExpiry(h, clock.time().Add(time.Millisecond)); err != nil {
				return fmt.Errorf("worker %d SetExpiry: %w", id, err)
			}
			borrowed := !pinnedOnly && rng.IntN(2) == 0
			if borrowed {
				if _, err := RentSlice[byte](s, h); err != nil && !errors.Is(err, ErrExpired) {
					return fmt.Errorf("worker %d rent of expiring entry: %w", id, err)
				}
			}
			clock.advance(2 * time.Millisecond)
			if borrowed {
				if err := s.Return(h); !errors.Is(err, ErrExpired) {
					return fmt.Errorf("worker %d Return of an expired entry: %w, want ErrExpired", id, err)
				}
			}
			if _, err := s.Size(h); !errors.Is(err, ErrExpired) {
				return fmt.Errorf("worker %d Size of an expired entry: %w, want ErrExpired", id, err)
			}
			if err := s.Free(h); err != nil {
				return fmt.Errorf("worker %d Free of an expired entry: %w", id, err)
			}
		}
	}
	for _, e := range es {
		if err := BorrowViewSlice(s, e.h, func(b []byte) error { return want(e, b) }); err != nil {
			return fmt.Errorf("worker %d at the end: %w", id, err)
		}
	}
	return nil
}

// TestRotateKeyStress runs workers that rent, view, borrow, clone, free and
// let entries expire, each checking its entries' bytes, while two
// goroutines rotate the key (one of them back and forth between two fixed
// keys and salts), a scheduled rotation and the background shuffler run,
// Shuffle moves everything and another goroutine loops runtime.GC, with
// GOMAXPROCS above the core count. Every entry must keep its bytes, every
// rotation succeed, and the invariants hold at the end.
func TestRotateKeyStress(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	rounds := rotStressRounds()
	for _, c := range allCiphers {
		t.Run(c.String(), func(t *testing.T) {
			clock := newTestClock(time.Now())
			s := newTest(t, WithCipher(c), WithShards(4), WithArenaSize(8192), withClock(clock),
				WithKeyRotation(time.Millisecond), WithBackgroundShuffle(time.Millisecond))
			ctx, cancel := context.WithCancel(context.Background())
			var bg sync.WaitGroup
			var rotations atomic.Int64
			bg.Go(func() {
				for ctx.Err() == nil {
					if err := s.RotateKey(nil, nil); err != nil {
						t.Errorf("RotateKey: %v", err)
						return
					}
					rotations.Add(1)
				}
			})
			bg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					k, sa := new([32]byte), new([8]byte)
					k[0], sa[0] = byte(1+i%2), byte(1+i%2) // a key of zeros is refused
					if err := s.RotateKey(k, sa); err != nil {
						t.Errorf("RotateKey to a fixed key: %v", err)
						return
					}
					rotations.Add(1)
				}
			})
			bg.Go(func() {
				for ctx.Err() == nil {
					if err := s.Shuffle(); err != nil {
						t.Errorf("Shuffle: %v", err)
						return
					}
					s.SetShuffleOnBorrowReturn(!s.onReturn.Load())
					time.Sleep(time.Millisecond)
				}
			})
			bg.Go(func() {
				for ctx.Err() == nil {
					runtime.GC()
					time.Sleep(time.Millisecond)
				}
			})
			bg.Go(func() {
				// The invariants hold between any two operations, also
				// while a rotation is part-way.
				for ctx.Err() == nil {
					if err := s.check(); err != nil {
						t.Errorf("check during the run: %v", err)
						cancel()
						return
					}
					time.Sleep(2 * time.Millisecond)
				}
			})
			var workers sync.WaitGroup
			for id := range 6 {
				workers.Go(func() {
					if err := rotWorker(ctx, s, id, rounds, clock, false); err != nil {
						t.Error(err)
						cancel()
					}
				})
			}
			workers.Wait()
			cancel()
			bg.Wait()
			mustCheck(t, s)
			t.Logf("%d rotations", rotations.Load())
		})
	}
}

// TestRotateKeyRacesEnd ends the Shuffler, by Close or by Purge then
// Close, at a random moment while rotations (called and scheduled),
// shuffles, borrows, clones and expiries run: nothing may panic or hang,
// and every call made after the end must fail with ErrClosed.
func TestRotateKeyRacesEnd(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	rounds := shortOr(12, 4)
	if v := rotStressRounds(); v > 300 {
		rounds = v / 25
	}
	for _, c := range allCiphers {
		for _, purge := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/purge=%v", c, purge), func(t *testing.T) {
				for r := range rounds {
					clock := newTestClock(time.Now())
					s, err := New(WithCipher(c), WithShards(4), WithArenaSize(8192), withClock(clock),
						WithKeyRotation(time.Millisecond), WithBackgroundShuffle(time.Millisecond))
					if err != nil {
						t.Fatal(err)
					}
					ctx, cancel := context.WithCancel(context.Background())
					var wg sync.WaitGroup
					wg.Go(func() {
						for ctx.Err() == nil {
							if err := s.RotateKey(nil, nil); err != nil && !errors.Is(err, ErrClosed) {
								t.Errorf("RotateKey: %v", err)
								return
							}
						}
					})
					wg.Go(func() {
						for ctx.Err() == nil {
							if err := s.Shuffle(); err != nil && !errors.Is(err, ErrClosed) {
								t.Errorf("Shuffle: %v", err)
								return
							}
						}
					})
					wg.Go(func() {
						for ctx.Err() == nil {
							runtime.GC()
						}
					})
					for id := range 4 {
						wg.Go(func() {
							err := rotWorker(ctx, s, id, 1<<30, clock, true)
							if err != nil && !errors.Is(err, ErrClosed) {
								t.Errorf("round %d: %v", r, err)
							}
						})
					}
					time.Sleep(time.Duration(mrand.IntN(20_000)) * time.Microsecond)
					done := make(chan error, 1)
					go func() {
						var err error
						if purge {
							err = s.Purge()
						}
						done <- errors.Join(err, s.Close())
					}()
					if err := errWithin(t, done, "Close or Purge did not return"); err != nil {
						t.Fatal(err)
					}
					if err := s.RotateKey(nil, nil); !errors.Is(err, ErrClosed) {
						t.Fatalf("RotateKey after the end: %v", err)
					}
					cancel()
					fin := make(chan error, 1)
					go func() { wg.Wait(); fin <- nil }()
					errWithin(t, fin, "a goroutine hung after the end")
					if t.Failed() {
						return
					}
				}
			})
		}
	}
}
