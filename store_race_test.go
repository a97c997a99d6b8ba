package memshuffle

import (
	"context"
	"errors"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestStoreRaceLifecycle races allocations of mixed sizes, frees,
// borrows, shuffles, moving returns, expiries and rotations on 6
// goroutines (GOMAXPROCS 8, a collection looping) against Purge and Close:
// nothing may panic or fault, and every error must be ErrClosed or
// expected.
func TestStoreRaceLifecycle(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	collectInLoop(t, 100*time.Microsecond)
	for round := range 12 {
		opts := []Option{WithShards(2), WithArenaSize(4096)}
		if round%3 == 1 {
			opts = append(opts, WithCipher(AES256GCM))
		}
		if round%2 == 0 {
			opts = append(opts, WithBackgroundShuffle(time.Millisecond))
		}
		s, err := New(opts...)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		ctx, cancel := context.WithCancel(context.Background())
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := mrand.New(mrand.NewPCG(uint64(round), uint64(g)))
				var hs []Handle
				for ctx.Err() == nil {
					switch r.IntN(10) {
					case 0, 1:
						var h Handle
						var err error
						if r.IntN(2) == 0 {
							h, err = Alloc[byte](s, 1+r.IntN(300))
						} else {
							h, err = Alloc[uint64](s, 1+r.IntN(40))
						}
						if err == nil {
							hs = append(hs, h)
						} else if !errors.Is(err, ErrClosed) {
							t.Errorf("Alloc: %v", err)
						}
					case 2:
						if len(hs) > 0 {
							k := r.IntN(len(hs))
							_ = s.Free(hs[k])
							hs = append(hs[:k], hs[k+1:]...)
						}
					case 3, 4:
						if len(hs) > 0 {
							_ = BorrowSlice(s, hs[r.IntN(len(hs))], func(b []byte) error {
								for i := range b {
									b[i] = byte(i)
								}
								return nil
							})
						}
					case 5:
						if len(hs) > 0 {
							_ = BorrowViewSlice(s, hs[r.IntN(len(hs))], func(b []byte) error {
								for i := range b {
									if b[i] != byte(i) && b[i] != 0 {
										return nil
									}
								}
								return nil
							})
						}
					case 6:
						_ = s.Shuffle()
					case 7:
						s.SetShuffleOnBorrowReturn(r.IntN(2) == 0)
					case 8:
						if len(hs) > 0 {
							_ = s.SetExpiry(hs[r.IntN(len(hs))], time.Now().Add(time.Duration(r.IntN(3))*time.Millisecond))
						}
					case 9:
						_ = s.Stats()
						if r.IntN(20) == 0 {
							_ = s.RotateKey(nil, nil)
						}
					}
				}
			}()
		}
		time.Sleep(time.Duration(5+round%7) * time.Millisecond)
		if round%2 == 0 {
			if err := s.Purge(); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		cancel()
		wg.Wait()
	}
}

// TestStoreRaceValues: goroutines that each own their entries keep
// reading back what they wrote while the others allocate, free, rent,
// view, shuffle, rotate and move entries on return, and the background
// shuffler runs.
func TestStoreRaceValues(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	for _, c := range []Cipher{AES256CTR, AES256GCM} {
		s := newTest(t, WithShards(2), WithArenaSize(4096), WithCipher(c), WithBackgroundShuffle(time.Millisecond))
		var wg sync.WaitGroup
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := mrand.New(mrand.NewPCG(uint64(g), 3))
				vals := map[Handle][]byte{}
				var hs []Handle
				for ctx.Err() == nil {
					switch r.IntN(9) {
					case 0, 1:
						var h Handle
						var err error
						n := 0
						switch r.IntN(3) {
						case 0:
							n = 1 + r.IntN(300)
							h, err = Alloc[byte](s, n)
						case 1:
							n = 8 * (1 + r.IntN(40))
							h, err = Alloc[uint64](s, n/8)
						case 2:
							n = 160
							h, err = Alloc[byte](s, n)
						}
						if err != nil {
							t.Errorf("Alloc: %v", err)
							return
						}
						v := make([]byte, n)
						for i := range v {
							v[i] = byte(r.Uint32())
						}
						if err := BorrowSlice(s, h, func(b []byte) error { copy(b, v); return nil }); err != nil {
							t.Errorf("Borrow: %v", err)
							return
						}
						vals[h] = v
						hs = append(hs, h)
					case 2:
						if len(hs) > 0 {
							k := r.IntN(len(hs))
							if err := s.Free(hs[k]); err != nil {
								t.Errorf("Free: %v", err)
								return
							}
							delete(vals, hs[k])
							hs = append(hs[:k], hs[k+1:]...)
						}
					case 3, 4:
						if len(hs) > 0 {
							h := hs[r.IntN(len(hs))]
							b, err := RentSlice[byte](s, h)
							if err != nil {
								t.Errorf("Rent: %v", err)
								return
							}
							if string(b) != string(vals[h]) {
								t.Errorf("entry changed")
							}
							for i := range b {
								b[i]++
							}
							copy(vals[h], b)
							runtime.Gosched()
							if err := s.Return(h); err != nil {
								t.Errorf("Return: %v", err)
								return
							}
						}
					case 5:
						if len(hs) > 0 {
							h := hs[r.IntN(len(hs))]
							if err := BorrowViewSlice(s, h, func(b []byte) error {
								if string(b) != string(vals[h]) {
									t.Errorf("view differs")
								}
								return nil
							}); err != nil {
								t.Errorf("View: %v", err)
							}
						}
					case 6:
						if err := s.Shuffle(); err != nil {
							t.Errorf("Shuffle: %v", err)
						}
					case 7:
						s.SetShuffleOnBorrowReturn(r.IntN(2) == 0)
					case 8:
						if r.IntN(50) == 0 {
							if err := s.RotateKey(nil, nil); err != nil {
								t.Errorf("RotateKey: %v", err)
							}
						}
					}
				}
				for h, v := range vals {
					if got := readAll(t, s, h); string(got) != string(v) {
						t.Errorf("entry %v differs at the end", h)
					}
				}
			}()
		}
		wg.Wait()
		cancel()
		mustCheck(t, s)
	}
}
