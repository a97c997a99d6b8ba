package memshuffle

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPauseMovingReturn measures the latency of a call on a small
// entry while another goroutine rents and returns a large entry of the
// same shard over and over, in the default cipher and in AES-256-GCM,
// with shuffle-on-borrow-return on (moving=on: every Return moves its
// entry to new space) and off (moving=off: it is encrypted again where it
// is). The call (probe) is a Size, which waits for the shard's lock and
// does nothing else, or a Rent+Return of 32 bytes, which with moving=on
// moves that entry too, and so maps and unmaps arenas of its own now and
// then. It reports pauseLoop's percentiles and maximum for the probe, and
// the mean time of the large entry's Returns (big-return-ns).
func BenchmarkPauseMovingReturn(b *testing.B) {
	for _, c := range []Cipher{AES256CTR, AES256GCM} {
		for _, big := range []int{1 << 20, 64 << 20} {
			for _, moving := range []bool{false, true} {
				for _, probe := range []string{"size", "rent-return"} {
					name := fmt.Sprintf("cipher=%v/big=%dMiB/moving=%s/probe=%s", c, big>>20, map[bool]string{false: "off", true: "on"}[moving], probe)
					b.Run(name, func(b *testing.B) {
						benchPauseMoving(b, c, big, moving, probe)
					})
				}
			}
		}
	}
}

// benchPauseMoving is one case of BenchmarkPauseMovingReturn.
func benchPauseMoving(b *testing.B, c Cipher, big int, moving bool, probe string) {
	s := newBench(b, WithShards(1), WithShuffleOnBorrowReturn(moving), WithCipher(c))
	hb, err := Alloc[byte](s, big)
	if err != nil {
		b.Fatal(err)
	}
	small := make([]Handle, 64)
	for i := range small {
		if small[i], err = Alloc[byte](s, 32); err != nil {
			b.Fatal(err)
		}
	}
	var stop atomic.Bool
	var returns atomic.Int64
	var spent atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if _, err := RentSlice[byte](s, hb); err != nil {
				b.Error(err)
				return
			}
			t0 := time.Now()
			if err := s.Return(hb); err != nil {
				b.Error(err)
				return
			}
			spent.Add(int64(time.Since(t0)))
			returns.Add(1)
		}
	}()
	i := 0
	pauseLoop(b, s, func() error {
		h := small[i&63]
		i++
		if probe == "size" {
			_, err := s.Size(h)
			return err
		}
		if _, err := RentSlice[byte](s, h); err != nil {
			return err
		}
		return s.Return(h)
	})
	stop.Store(true)
	wg.Wait()
	if n := returns.Load(); n > 0 {
		b.ReportMetric(float64(spent.Load())/float64(n), "big-return-ns")
	}
}
