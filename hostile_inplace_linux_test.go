package memshuffle

import (
	"errors"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestHostileInPlace: shards full of one-size entries, which Shuffle
// permutes in place, under rents, rotations, background cycles and
// moving returns, checked entry by entry.
func TestHostileInPlace(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(hxEnv("MEMSHUFFLE_HOSTILE_PROCS", 8)))
	collectInLoop(t, 100*time.Microsecond)
	seed := uint64(hxEnv("MEMSHUFFLE_HOSTILE_SEED", 1))
	rng := mrand.New(mrand.NewPCG(seed, 11))
	rounds := hxEnv("MEMSHUFFLE_HOSTILE_ROUNDS", 6)
	if testing.Short() && os.Getenv("MEMSHUFFLE_HOSTILE_ROUNDS") == "" {
		rounds = 3
	}
	for round := range rounds {
		c := []Cipher{AES256CTR, AES256GCM, ChaCha20Poly1305}[round%3]
		size := []int{128, 256, 112, 200}[rng.IntN(4)]
		s, err := New(WithCipher(c), WithShards(1<<rng.IntN(2)), WithArenaSize(4096))
		if err != nil {
			t.Fatal(err)
		}
		const n = 1200
		workers := 6
		type ent struct {
			h         Handle
			seed, ver uint64
		}
		ents := make([]ent, n)
		for i := range ents {
			ents[i].seed = rng.Uint64()
			src := make([]byte, size)
			stFill(src, ents[i].seed, 0)
			if ents[i].h, err = CopyFrom(s, src); err != nil {
				t.Fatal(err)
			}
		}
		var stop atomic.Bool
		var fails atomic.Int64
		failf := func(f string, a ...any) {
			if fails.Add(1) <= 10 {
				t.Errorf("round %d (%v, size %d): "+f, append([]any{round, c, size}, a...)...)
			}
		}
		var wg sync.WaitGroup
		for w := range workers {
			ws := rng.Uint64()
			wg.Go(func() {
				r := mrand.New(mrand.NewPCG(ws, 1))
				for !stop.Load() {
					k := w + workers*r.IntN(n/workers)
					e := &ents[k]
					switch r.IntN(4) {
					case 0, 1:
						b, err := RentSlice[byte](s, e.h)
						if err != nil {
							failf("RentSlice: %v", err)
							continue
						}
						if !stMatch(b, e.seed, e.ver) {
							failf("entry %d: not version %d", k, e.ver)
						}
						if r.IntN(4) == 0 {
							time.Sleep(time.Duration(r.IntN(300)) * time.Microsecond)
							if !stMatch(b, e.seed, e.ver) {
								failf("entry %d changed while rented", k)
							}
						}
						stFill(b, e.seed, e.ver+1)
						if err := s.Return(e.h); err != nil {
							failf("Return: %v", err)
							continue
						}
						e.ver++
					case 2:
						err := BorrowViewSlice(s, e.h, func(b []byte) error {
							if !stMatch(b, e.seed, e.ver) {
								failf("entry %d (view): not version %d", k, e.ver)
							}
							return nil
						})
						if err != nil {
							failf("BorrowViewSlice: %v", err)
						}
					case 3:
						want := make([]byte, size)
						stFill(want, e.seed, e.ver)
						eq, err := Equal(s, e.h, want)
						if err != nil || !eq {
							failf("Equal entry %d: %v %v", k, eq, err)
						}
					}
				}
			})
		}
		var bg sync.WaitGroup
		cs := rng.Uint64()
		bg.Go(func() {
			r := mrand.New(mrand.NewPCG(cs, 2))
			var stopBG func()
			for !stop.Load() {
				switch r.IntN(5) {
				case 0, 1:
					if err := s.Shuffle(); err != nil {
						failf("Shuffle: %v", err)
					}
				case 2:
					if err := s.RotateKey(nil, nil); err != nil {
						failf("RotateKey: %v", err)
					}
				case 3:
					if stopBG != nil {
						stopBG()
						stopBG = nil
					} else if f, err := s.StartBackgroundShuffle(t.Context(), 0); err == nil {
						stopBG = f
					}
				case 4:
					s.SetShuffleOnBorrowReturn(r.IntN(2) == 0)
				}
			}
			if stopBG != nil {
				stopBG()
			}
		})
		bg.Go(func() {
			for !stop.Load() {
				time.Sleep(5 * time.Millisecond)
				if err := s.check(); err != nil {
					failf("check: %v", err)
				}
			}
		})
		time.Sleep(time.Duration(200+rng.IntN(300)) * time.Millisecond)
		stop.Store(true)
		wg.Wait()
		bg.Wait()
		st := s.Stats()
		if st.Entries != n || st.Rented != 0 || st.Viewed != 0 {
			failf("Stats %+v", st)
		}
		for k := range ents {
			e := &ents[k]
			err := BorrowViewSlice(s, e.h, func(b []byte) error {
				if !stMatch(b, e.seed, e.ver) {
					return errors.New("mismatch")
				}
				return nil
			})
			if err != nil {
				failf("final entry %d: %v", k, err)
			}
		}
		t.Logf("round %d: %v size %d: shuffles %d rotations %d moved %d", round, c, size, st.Shuffles, st.KeyRotations, st.BytesMoved)
		s.Close()
		if t.Failed() {
			return
		}
	}
}
