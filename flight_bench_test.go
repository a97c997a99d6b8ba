package memshuffle

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRentReturnBesideLarge times each Rent+Return of a 32-byte
// entry while another goroutine rents and returns a large entry of the
// same shard over and over, and reports the percentiles (p50-ns, p99-ns,
// within 1/32, and max-ns, exact) and how many large Rent+Returns ran
// (large-per-s). Before the large entry's decryption and encryption ran
// with the shard unlocked, the small one waited for each of them.
func BenchmarkRentReturnBesideLarge(b *testing.B) {
	for _, size := range []int{1 << 20, 64 << 20} {
		b.Run("large="+strconv.Itoa(size>>20)+"MiB", func(b *testing.B) {
			s := newBench(b, WithShards(1))
			small, err := Alloc[byte](s, 32)
			if err != nil {
				b.Fatal(err)
			}
			big, err := Alloc[byte](s, size)
			if err != nil {
				b.Fatal(err)
			}
			var stop atomic.Bool
			var bigOps atomic.Int64
			done := make(chan struct{})
			go func() {
				defer close(done)
				for !stop.Load() {
					if _, err := RentSlice[byte](s, big); err != nil {
						b.Error(err)
						return
					}
					if err := s.Return(big); err != nil {
						b.Error(err)
						return
					}
					bigOps.Add(1)
				}
			}()
			var lat latencies
			b.SetBytes(32)
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				t0 := time.Now()
				if _, err := RentSlice[byte](s, small); err != nil {
					b.Fatal(err)
				}
				if err := s.Return(small); err != nil {
					b.Fatal(err)
				}
				lat.add(time.Since(t0))
			}
			elapsed := time.Since(start)
			stop.Store(true)
			<-done
			b.ReportMetric(float64(lat.percentile(0.5)), "p50-ns")
			b.ReportMetric(float64(lat.percentile(0.99)), "p99-ns")
			b.ReportMetric(float64(lat.max), "max-ns")
			b.ReportMetric(float64(bigOps.Load())/elapsed.Seconds(), "large-per-s")
		})
	}
}
