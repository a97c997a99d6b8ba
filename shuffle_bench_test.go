package memshuffle

import (
	mrand "math/rand/v2"
	"runtime"
	"testing"
)

// The floors Shuffle is measured against, each next to the Shuffle it
// bounds, so that one run gives both and the result reads as a ratio.
//
// BenchmarkShuffleFloor/permute is a bare loop over heap memory that copies
// records to a uniformly random permutation of places (drawn before the
// timer starts) and clears each source: what moving entries to random new
// places costs with no slots, arenas or bookkeeping. BenchmarkShuffleFloor/
// copyclear copies the same bytes between two heap buffers and clears the
// source: the floor of any move that leaves nothing behind.
func BenchmarkShuffleFloor(b *testing.B) {
	b.Run("permute/entries=1000000/size=32", func(b *testing.B) {
		const n, size = 1000000, 32
		src, dst := make([]byte, n*size), make([]byte, n*size)
		for i := range src {
			src[i] = byte(i)
		}
		perm := make([]uint32, n)
		for i, p := range mrand.Perm(n) {
			perm[i] = uint32(p)
		}
		b.SetBytes(n * size)
		b.ReportAllocs()
		cpu := startCPU()
		for b.Loop() {
			permuteClear(dst, src, perm, size)
			src, dst = dst, src
		}
		cpu.report(b, n)
	})
	b.Run("copyclear/total=256MiB/size=65536", func(b *testing.B) {
		const total, size = 256 << 20, 65536
		src, dst := make([]byte, total), make([]byte, total)
		for i := range src {
			src[i] = byte(i)
		}
		b.SetBytes(total)
		b.ReportAllocs()
		cpu := startCPU()
		for b.Loop() {
			for off := 0; off < total; off += size {
				copy(dst[off:off+size], src[off:off+size])
				clear(src[off : off+size])
			}
			src, dst = dst, src
		}
		cpu.report(b, 0)
	})
}

// permuteClear copies record i of src to record perm[i] of dst and clears
// it in src.
func permuteClear(dst, src []byte, perm []uint32, size int) {
	for i, p := range perm {
		s := src[i*size : (i+1)*size]
		copy(dst[int(p)*size:], s)
		clear(s)
	}
}

// BenchmarkShufflePaired weighs BenchmarkShuffle/entries=1000000/size=32
// against BenchmarkBaselinePermuteCopy/entries=1000000/size=32 in the same
// moments: each iteration times one Shuffle of the million entries and one
// pass of the bare loop (a fresh permutation drawn, every record copied to
// its place and cleared), in an order that alternates, and reports the
// median of the per-iteration quotients (x-permute) with the mean time per
// entry of each side. Run seconds apart, the two benchmarks' medians drift
// with the machine's speed; a quotient of passes a few milliseconds apart
// does not.
func BenchmarkShufflePaired(b *testing.B) {
	b.Run("entries=1000000/size=32", func(b *testing.B) {
		const n = 1000000
		s, bare := filledShuffler(b, n, 32), newPermuteWork(n)
		b.SetBytes(n * 32)
		b.ReportAllocs()
		sum, x := alternate(b,
			func() {
				if err := s.Shuffle(); err != nil {
					b.Fatal(err)
				}
			},
			func() { bare.pass(true) })
		xs := x[0]
		b.ReportMetric(median(xs), "x-permute")
		b.ReportMetric(float64(sum[0])/float64(b.N*n), "shuffle-ns/entry")
		b.ReportMetric(float64(sum[1])/float64(b.N*n), "permute-ns/entry")
	})
}

// BenchmarkShuffleBytes is Shuffle of 256 MiB in 64 KiB entries, the size
// BenchmarkShuffleFloor/copyclear moves.
func BenchmarkShuffleBytes(b *testing.B) {
	b.Run("total=256MiB/size=65536", func(b *testing.B) {
		const total, size = 256 << 20, 65536
		benchShuffleCPU(b, filledShuffler(b, total/size, size), total/size, size).report(b, 0)
	})
}

// BenchmarkShuffleEntries is BenchmarkShuffle/entries=1000000/size=32 with
// the CPU time reported too.
func BenchmarkShuffleEntries(b *testing.B) {
	b.Run("entries=1000000/size=32", func(b *testing.B) {
		const n = 1000000
		benchShuffleCPU(b, filledShuffler(b, n, 32), n, 32).report(b, n)
	})
}

// BenchmarkShuffleShards is BenchmarkShuffleEntries with the entries dealt
// to the eight shards in a fixed way, so that each shard's fresh arena has
// a known size, where Alloc's streams deal a single goroutine's entries
// unevenly, and differently from run to run: in turn to all eight (about
// 3.8 MiB each) or to four (7.6 MiB), or 157,000 to each even shard and
// 93,000 to each odd one (4.8 and 2.8 MiB), a split seen in runs of
// BenchmarkShufflePaired.
func BenchmarkShuffleShards(b *testing.B) {
	for _, c := range []struct {
		name string
		deal func(i uint32) uint32
	}{
		{"shards=8", func(i uint32) uint32 { return i % 8 }},
		{"shards=4", func(i uint32) uint32 { return i % 4 }},
		{"shards=8-uneven", func(i uint32) uint32 {
			if i < 628000 {
				return i % 4 * 2
			}
			return i%4*2 + 1
		}},
	} {
		b.Run("entries=1000000/size=32/"+c.name, func(b *testing.B) {
			const n = 1000000
			s := newBench(b, WithShards(8))
			var i uint32
			s.replayShard = func() uint32 { i++; return c.deal(i - 1) }
			benchShuffleCPU(b, fillShuffler(b, s, n, 32), n, 32).report(b, n)
		})
	}
}

// filledShuffler returns a Shuffler made with opts holding n entries of
// size bytes, shuffled once: the first Shuffle maps the sizes it keeps.
func filledShuffler(b *testing.B, n, size int, opts ...Option) *Shuffler {
	return fillShuffler(b, newBench(b, opts...), n, size)
}

// fillShuffler is filledShuffler for a Shuffler the caller made, and may
// have set a hook on, such as replayShard.
func fillShuffler(b *testing.B, s *Shuffler, n, size int) *Shuffler {
	for range n {
		if _, err := Alloc[byte](s, size); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Shuffle(); err != nil {
		b.Fatal(err)
	}
	return s
}

// benchShuffleCPU times Shuffle of s, a filledShuffler of n entries of
// size bytes, in b's loop and returns the loop's CPU clock for the caller
// to report.
func benchShuffleCPU(b *testing.B, s *Shuffler, n, size int) cpuClock {
	b.SetBytes(int64(n * size))
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		if err := s.Shuffle(); err != nil {
			b.Fatal(err)
		}
	}
	return cpu
}

// cpuClock measures the CPU time of a benchmark loop on one thread.
type cpuClock struct{ start int64 }

func startCPU() cpuClock {
	runtime.LockOSThread()
	return cpuClock{threadCPU()}
}

// report adds cpu-ns/op, and ns/entry and cpu-ns/entry when entries > 0.
func (c cpuClock) report(b *testing.B, entries int) {
	cpu := float64(threadCPU()-c.start) / float64(b.N)
	runtime.UnlockOSThread()
	b.ReportMetric(cpu, "cpu-ns/op")
	if entries > 0 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(entries), "ns/entry")
		b.ReportMetric(cpu/float64(entries), "cpu-ns/entry")
	}
}
