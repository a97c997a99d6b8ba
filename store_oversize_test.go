package memshuffle

import (
	"bytes"
	mrand "math/rand/v2"
	"testing"
)

// TestStoreOversize mixes entries too large to share an arena
// (around MaxArenaSize, with and without a tag, at every alignment) with
// small ones through frees, shuffles and moving returns, checking the
// invariants after every step and every entry at the end.
func TestStoreOversize(t *testing.T) {
	if raceBuild {
		t.Skip("one goroutine: nothing for the race detector to find, and its invariant checks several times as slow")
	}
	for _, c := range []Cipher{AES256CTR, AES256GCM} {
		s := newTest(t, WithShards(1), WithCipher(c))
		r := mrand.New(mrand.NewPCG(3, 4))
		m := model{}
		var hs []Handle
		big := []int{16 << 20, 16<<20 + 1, 17 << 20, 16<<20 - 16, 16<<20 - 8}
		for step := range 40 {
			switch op := r.IntN(7); op {
			case 0:
				n := big[r.IntN(len(big))]
				h := allocPattern(t, s, m, n, step)
				hs = append(hs, h)
			case 1, 2:
				h := allocPattern(t, s, m, 1+r.IntN(2000), step)
				hs = append(hs, h)
			case 3:
				if len(hs) > 0 {
					k := r.IntN(len(hs))
					if err := s.Free(hs[k]); err != nil {
						t.Fatal(err)
					}
					delete(m, hs[k])
					hs = append(hs[:k], hs[k+1:]...)
				}
			case 4:
				if err := s.Shuffle(); err != nil {
					t.Fatal(err)
				}
			case 5:
				s.SetShuffleOnBorrowReturn(r.IntN(2) == 0)
				if len(hs) > 0 {
					h := hs[r.IntN(len(hs))]
					b, err := RentSlice[byte](s, h)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(b, m[h]) {
						t.Fatalf("step %d: entry differs", step)
					}
					b[0]++
					m[h][0]++
					if err := s.Return(h); err != nil {
						t.Fatal(err)
					}
				}
			case 6:
				for k := 0; k < len(hs); k++ {
					if len(m[hs[k]]) >= 16<<20-16 && r.IntN(2) == 0 {
						if err := s.Free(hs[k]); err != nil {
							t.Fatal(err)
						}
						delete(m, hs[k])
						hs = append(hs[:k], hs[k+1:]...)
						k--
					}
				}
			}
			if err := s.check(); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
		}
		checkModel(t, s, m)
	}
}
