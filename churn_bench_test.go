package memshuffle

import (
	"math/bits"
	"math/rand/v2"
	"strconv"
	"testing"
)

// BenchmarkChurn frees a random live entry and allocates one in its place,
// of a size drawn log-uniformly up to twice max, holding live entries
// throughout: the steady state of a store whose entries come and go, where
// compaction empties arenas and new entries need new ones. It reports the
// arenas given back to the system per operation and the memory mapped over
// the bytes live at the end.
func BenchmarkChurn(b *testing.B) {
	for _, c := range []struct{ max, live int }{{4096, 2000}, {65536, 2000}, {1 << 20, 200}} {
		b.Run("max="+strconv.Itoa(c.max), func(b *testing.B) {
			s := newBench(b)
			r := rand.New(rand.NewPCG(1, 2))
			// A table of sizes, so that b.SetBytes is their exact mean.
			sizes := make([]int, 4096)
			total := 0
			for i := range sizes {
				n := 16 << r.IntN(bits.Len(uint(c.max))-4)
				sizes[i] = n + r.IntN(n)
				total += sizes[i]
			}
			hs := make([]Handle, c.live)
			for i := range hs {
				h, err := Alloc[byte](s, sizes[i%len(sizes)])
				if err != nil {
					b.Fatal(err)
				}
				hs[i] = h
			}
			before := s.Stats()
			b.SetBytes(int64(total / len(sizes)))
			b.ReportAllocs()
			k := 0
			for b.Loop() {
				i := r.IntN(len(hs))
				if err := s.Free(hs[i]); err != nil {
					b.Fatal(err)
				}
				h, err := Alloc[byte](s, sizes[k%len(sizes)])
				if err != nil {
					b.Fatal(err)
				}
				hs[i] = h
				k++
			}
			b.StopTimer()
			st := s.Stats()
			b.ReportMetric(float64(st.ArenasReleased-before.ArenasReleased)/float64(b.N), "released/op")
			b.ReportMetric(float64(st.MappedBytes)/float64(st.LiveBytes), "mapped/live")
		})
	}
}
