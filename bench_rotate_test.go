package memshuffle

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRentReturnDuringKeyRotation measures Rent+Return of 32-byte
// entries while WithKeyRotation re-encrypts 256 MiB of 64 KiB entries over
// and over (every millisecond from the end of one rotation to the start of
// the next), and reports the latency percentiles, how many rotations ran,
// how long one took, and the longest a rotation held a shard's lock
// (hold-max-ns), which is what a Rent waits for at worst, and the median and
// 99th percentile of the holds (hold-p50-ns, hold-p99-ns, each the power of
// two above it), which machine load distorts least. rotation=off is the
// same loop over the same 256 MiB with no rotation: what the machine alone
// adds to the latencies. Rotations re-encrypt in
// batches of at most 64 KiB per hold, so that bound no longer grows with
// the data a shard holds.
func BenchmarkRentReturnDuringKeyRotation(b *testing.B) {
	for _, c := range []struct {
		shards int
		rotate bool
	}{{8, true}, {64, true}, {8, false}} {
		shards := c.shards
		name := fmt.Sprintf("total=256MiB/size=32/shards=%d", shards)
		opts := []Option{WithShards(shards)}
		if c.rotate {
			opts = append(opts, WithKeyRotation(time.Millisecond))
		} else {
			name += "/rotation=off"
		}
		b.Run(name, func(b *testing.B) {
			s := newBench(b, opts...)
			const bigSize, big = 65536, 256 << 20 / 65536
			for range big {
				if _, err := Alloc[byte](s, bigSize); err != nil {
					b.Fatal(err)
				}
			}
			small := make([]Handle, 1024)
			for i := range small {
				small[i], _ = Alloc[byte](s, 32)
			}
			// Rotations under way before the clock starts.
			for r := s.Stats().KeyRotations; c.rotate && s.Stats().KeyRotations < r+2; {
				time.Sleep(time.Millisecond)
			}
			lat := make([]time.Duration, 0, 1<<20)
			r0, t0 := s.Stats().KeyRotations, time.Now()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				h := small[i&1023]
				i++
				start := time.Now()
				if _, err := RentSlice[byte](s, h); err != nil {
					b.Fatal(err)
				}
				if err := s.Return(h); err != nil {
					b.Fatal(err)
				}
				if len(lat) < cap(lat) {
					lat = append(lat, time.Since(start))
				}
			}
			rotations := s.Stats().KeyRotations - r0
			elapsed := time.Since(t0)
			slices.Sort(lat)
			pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) }
			b.ReportMetric(pct(0.50), "p50-ns")
			b.ReportMetric(pct(0.99), "p99-ns")
			b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds()), "max-ns")
			b.ReportMetric(float64(rotationHoldMax(s).Nanoseconds()), "hold-max-ns")
			b.ReportMetric(float64(s.rotator.holds.percentile(0.5)), "hold-p50-ns")
			b.ReportMetric(float64(s.rotator.holds.percentile(0.99)), "hold-p99-ns")
			b.ReportMetric(float64(rotations), "rotations")
			if rotations > 0 {
				b.ReportMetric(float64(elapsed.Nanoseconds())/float64(rotations), "ns/rotation")
			}
		})
	}
}

// rotationHoldMax is the longest a rotation of s has held a shard lock.
func rotationHoldMax(s *Shuffler) time.Duration {
	return time.Duration(s.rotator.holds.nanos.Load())
}

// BenchmarkRotateKeyBusy measures RotateKey of 16 MiB in 64 KiB entries in
// a process with more goroutines runnable than processors: busy=cpu runs
// 2*GOMAXPROCS goroutines that only compute, busy=renters as many that
// rent and return 32-byte entries of the same Shuffler, so that its shard
// locks are contended; busy=none is the same rotation with neither.
func BenchmarkRotateKeyBusy(b *testing.B) {
	const size, n = 65536, 16 << 20 / 65536
	for _, busy := range []string{"none", "cpu", "renters"} {
		b.Run(fmt.Sprintf("total=16MiB/size=%d/busy=%s", size, busy), func(b *testing.B) {
			s := newBench(b)
			for range n {
				if _, err := Alloc[byte](s, size); err != nil {
					b.Fatal(err)
				}
			}
			workers := 2 * runtime.GOMAXPROCS(0)
			var stop atomic.Bool
			var wg sync.WaitGroup
			for range workers {
				switch busy {
				case "cpu":
					wg.Go(func() {
						for x := uint64(1); !stop.Load(); x = x*6364136223846793005 + 1 {
						}
					})
				case "renters":
					h, err := Alloc[byte](s, 32)
					if err != nil {
						b.Fatal(err)
					}
					wg.Go(func() {
						for !stop.Load() {
							if _, err := RentSlice[byte](s, h); err == nil {
								s.Return(h)
							}
						}
					})
				}
			}
			b.SetBytes(size * n)
			b.ReportAllocs()
			for b.Loop() {
				if err := s.RotateKey(nil, nil); err != nil {
					b.Fatal(err)
				}
			}
			stop.Store(true)
			wg.Wait()
		})
	}
}
