package memshuffle

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkAllocTTL measures Alloc of 32 bytes in a shard where every entry
// has a TTL and about live of them are unexpired, the clock moving 1 µs per
// Alloc: each Alloc also wipes one expired entry, on average (a few at a
// time), and records one deadline. max-ns is the longest Alloc of the run;
// each Alloc timed includes two clock reads. Handles are dropped, as a
// program that lets entries expire may: their slots stay.
func BenchmarkAllocTTL(b *testing.B) {
	for _, live := range []int{1000, 1000000} {
		b.Run(fmt.Sprintf("live=%d/size=32", live), func(b *testing.B) {
			clock := newTestClock(time.Unix(1e9, 0))
			s := newBench(b, WithShards(1), WithDefaultTTL(time.Duration(live)*time.Microsecond), withClock(clock))
			alloc := func() {
				clock.advance(time.Microsecond)
				if _, err := Alloc[byte](s, 32); err != nil {
					b.Fatal(err)
				}
			}
			for range 2 * live { // to the steady state
				alloc()
			}
			b.SetBytes(32)
			b.ReportAllocs()
			var longest time.Duration
			for b.Loop() {
				t0 := time.Now()
				alloc()
				longest = max(longest, time.Since(t0))
			}
			b.ReportMetric(float64(longest.Nanoseconds()), "max-ns")
			if st := s.Stats(); st.Entries > live+allocSweepEntries+1 {
				b.Fatalf("%d entries live at the end, want about %d", st.Entries, live)
			}
		})
	}
}
