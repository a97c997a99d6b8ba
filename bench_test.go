package memshuffle

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"math"
	"math/bits"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/aesctr"
)

var benchSizes = []int{16, 32, 1019, 4096, 65536, 1 << 20}

func newBench(b *testing.B, opts ...Option) *Shuffler {
	b.Helper()
	s, err := New(opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func rentReturn(b *testing.B, s *Shuffler, h Handle) {
	if _, err := RentSlice[byte](s, h); err != nil {
		b.Fatal(err)
	}
	if err := s.Return(h); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRentReturn is one decrypt and one re-encrypt of an entry.
// benchRentReturn measures Rent+Return of one entry of size bytes in a
// Shuffler made with opts.
func benchRentReturn(b *testing.B, size int, opts ...Option) {
	s := newBench(b, opts...)
	h, err := Alloc[byte](s, size)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		rentReturn(b, s, h)
	}
}

func BenchmarkRentReturn(b *testing.B) {
	for _, size := range benchSizes {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			benchRentReturn(b, size)
		})
	}
}

// BenchmarkRentReturnLive is Rent+Return of a 32-byte entry with many other
// entries live, with shuffle-on-borrow-return off and on: the cost should
// not depend on how much else is stored.
func BenchmarkRentReturnLive(b *testing.B) {
	for _, live := range []int{10, 1000, 10000, 1000000} {
		for _, on := range []bool{false, true} {
			name := fmt.Sprintf("live=%d/onreturn=%v", live, on)
			b.Run(name, func(b *testing.B) {
				s := newBench(b)
				hs := make([]Handle, live)
				for i := range hs {
					h, err := Alloc[byte](s, 32)
					if err != nil {
						b.Fatal(err)
					}
					hs[i] = h
				}
				s.SetShuffleOnBorrowReturn(on)
				b.SetBytes(32)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					// Walk the entries so the cost includes finding cold ones.
					rentReturn(b, s, hs[i])
					i++
					if i == len(hs) {
						i = 0
					}
				}
			})
		}
	}
}

// BenchmarkAlloc measures Alloc; entries are freed outside the timer in
// batches so memory stays bounded.
func BenchmarkAlloc(b *testing.B) {
	for _, size := range []int{32, 4096} {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			s := newBench(b)
			hs := make([]Handle, 0, 1<<14)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				h, err := Alloc[byte](s, size)
				if err != nil {
					b.Fatal(err)
				}
				hs = append(hs, h)
				if len(hs) == cap(hs) {
					b.StopTimer()
					for _, h := range hs {
						s.Free(h)
					}
					hs = hs[:0]
					b.StartTimer()
				}
			}
		})
	}
}

// BenchmarkFree measures Free; entries are made outside the timer.
func BenchmarkFree(b *testing.B) {
	for _, size := range []int{32, 4096} {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			s := newBench(b)
			var hs []Handle
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if len(hs) == 0 {
					b.StopTimer()
					for range 1 << 14 {
						h, err := Alloc[byte](s, size)
						if err != nil {
							b.Fatal(err)
						}
						hs = append(hs, h)
					}
					b.StartTimer()
				}
				if err := s.Free(hs[len(hs)-1]); err != nil {
					b.Fatal(err)
				}
				hs = hs[:len(hs)-1]
			}
		})
	}
}

// BenchmarkShuffle moves every entry of a full Shuffler once per iteration.
// The 256 MiB case is the one held against BenchmarkBaselineCopyClear; the
// 1,000- and 100,000-entry cases are the workloads of the original library's
// own shuffle benchmark.
func BenchmarkShuffle(b *testing.B) {
	cases := []struct {
		name    string
		size, n int
	}{
		{"entries=1000000/size=32", 32, 1000000},
		{"entries=100000/size=32", 32, 100000},
		{"entries=1000/size=65536", 65536, 1000},
		{"total=256MiB/size=65536", 65536, 256 << 20 / 65536},
		{"total=1GiB/size=65536", 65536, 1 << 30 / 65536},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s := filledShuffler(b, c.n, c.size)
			b.SetBytes(int64(c.size * c.n))
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Shuffle(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(c.n), "ns/entry")
		})
	}
}

// BenchmarkRotateKey re-encrypts 256 MiB held in 64 KiB entries.
func BenchmarkRotateKey(b *testing.B) {
	b.Run("total=256MiB/size=65536", func(b *testing.B) {
		s := newBench(b)
		const size, n = 65536, 256 << 20 / 65536
		for range n {
			if _, err := Alloc[byte](s, size); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(size * n)
		b.ReportAllocs()
		for b.Loop() {
			if err := s.RotateKey(nil, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRentReturnParallel runs Rent+Return of 32-byte entries from
// GOMAXPROCS goroutines: each on its own entries, and all on one shared
// entry (where most attempts find it busy and retry).
func BenchmarkRentReturnParallel(b *testing.B) {
	b.Run("entries=own", func(b *testing.B) {
		s := newBench(b)
		b.SetBytes(32)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			hs := make([]Handle, 64)
			for i := range hs {
				h, err := Alloc[byte](s, 32)
				if err != nil {
					b.Error(err)
					return
				}
				hs[i] = h
			}
			i := 0
			for pb.Next() {
				h := hs[i&63]
				i++
				if _, err := RentSlice[byte](s, h); err != nil {
					b.Error(err)
					return
				}
				if err := s.Return(h); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("entries=shared", func(b *testing.B) {
		s := newBench(b)
		h, err := Alloc[byte](s, 32)
		if err != nil {
			b.Fatal(err)
		}
		var busy atomic.Int64
		b.SetBytes(32)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				for {
					if _, err := RentSlice[byte](s, h); err == nil {
						break
					}
					busy.Add(1)
					runtime.Gosched()
				}
				if err := s.Return(h); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(busy.Load())/float64(b.N), "busy/op")
	})
}

// BenchmarkRentReturnParallelPaired weighs two goroutines against one on
// their own entries as BenchmarkRentReturnPaired weighs Rent+Return
// against the ciphers: each iteration times one goroutine doing 2×block
// Rent+Returns of 32 B and two goroutines doing block each at once, in an
// order that alternates, and reports the median of the per-iteration
// quotients (x-one: the two goroutines' throughput over one's). The work
// is that of BenchmarkRentReturnParallel/entries=own, 64 entries per
// goroutine, each goroutine's made by that goroutine. A block takes
// milliseconds: the two-goroutine time is the longer of two, and a stall
// of either CPU weighs on it, more so the shorter the block.
//
// The second goroutine never sleeps: between its blocks it polls for the
// next one, yielding its P each time, so that its thread stays on its CPU.
// A goroutine that slept between blocks was woken onto the first one's
// CPU, and the two shared it until the system moved one: what that timed
// was the wake-up, not the library (x-one near 1). one-ns/op, timed while
// the second goroutine polls, reads as BenchmarkRentReturn/size=32 does.
//
// x-control is the same quotient for work that shares nothing and calls
// nothing: each goroutine adds into a 16 KiB buffer of its own, in its
// first-level cache, timed in the same iterations. Two virtual CPUs that
// the host runs on one core's two hardware threads, or that it takes
// turns with, bring it well under 2 whatever the library does; a run
// whose x-one falls with it measured the machine. shared-shards counts
// the shards holding entries of both goroutines: 0 unless pickShard gave
// them the same locks, which would lower x-one without the control
// moving.
func BenchmarkRentReturnParallelPaired(b *testing.B) {
	const block, own = 1 << 17, 64
	s := newBench(b)
	alloc := func() ([]Handle, error) {
		hs := make([]Handle, own)
		for i := range hs {
			h, err := Alloc[byte](s, 32)
			if err != nil {
				return nil, err
			}
			hs[i] = h
		}
		return hs, nil
	}
	// run reports the first error rather than failing, so that the second
	// goroutine may call it too.
	run := func(hs []Handle, n int) error {
		for i := range n {
			h := hs[i&(own-1)]
			if _, err := RentSlice[byte](s, h); err != nil {
				return err
			}
			if err := s.Return(h); err != nil {
				return err
			}
		}
		return nil
	}
	mine, err := alloc()
	if err != nil {
		b.Fatal(err)
	}
	// The second goroutine runs block number asked once asked > done, and
	// stops when asked is stopAsking. It makes its entries while this one
	// waits without yielding, so that it runs on another P: entries made
	// on one P share its stream of shards (pickShard), and two goroutines
	// that had made theirs on the same P would contend for the same locks.
	const stopAsking = ^uint64(0)
	var asked, done atomic.Uint64
	var theirErr error // written before done moves on
	control := false   // written before asked moves on: which block to run
	// Block 1 is asked before the goroutine starts, so that it takes the
	// end of its alloc for block 1 done and waits for block 2: asked
	// still 0 would read as a block to run, which could overlap the
	// first timed pass.
	asked.Store(1)
	var theirs []Handle // written before done moves on, like theirErr
	go func() {
		var err error
		theirs, err = alloc()
		theirErr = err
		var buf controlBuf
		done.Store(1)
		for n := uint64(1); ; {
			a := asked.Load()
			if a == stopAsking {
				return
			}
			if a == n {
				runtime.Gosched()
				continue
			}
			n = a
			if control {
				buf.add(controlRounds)
			} else if theirErr == nil {
				theirErr = run(theirs, block)
			}
			done.Store(n)
		}
	}()
	// both runs one block on each goroutine at once, Rent+Returns or the
	// control's: here is this goroutine's.
	both := func(here func() error, ctl bool) error {
		control = ctl
		n := asked.Load() + 1
		asked.Store(n)
		err := here()
		for done.Load() != n {
			runtime.Gosched()
		}
		if err == nil && !ctl {
			err = theirErr
		}
		return err
	}
	var buf controlBuf
	var xc []float64
	defer asked.Store(stopAsking)
	for done.Load() != 1 {
	}
	if theirErr != nil {
		b.Fatal(theirErr)
	}
	b.SetBytes(32 * 2 * block)
	b.ReportAllocs()
	sum, x := alternate(b,
		func() {
			if err := run(mine, 2*block); err != nil {
				b.Fatal(err)
			}
		},
		func() {
			if err := both(func() error { return run(mine, block) }, false); err != nil {
				b.Fatal(err)
			}
		},
		func() {
			// Off the benchmark's clock: ns/op and MB/s are the
			// Rent+Returns'.
			b.StopTimer()
			t0 := time.Now()
			buf.add(2 * controlRounds)
			one := time.Since(t0)
			t0 = time.Now()
			both(func() error { buf.add(controlRounds); return nil }, true)
			xc = append(xc, float64(one)/float64(time.Since(t0)))
			b.StartTimer()
		})
	n := float64(b.N * 2 * block)
	b.ReportMetric(median(x[0]), "x-one")
	b.ReportMetric(median(xc), "x-control")
	// The measure assumes the two goroutines' entries are in different
	// shards; shared-shards says whether they were, so that a low x-one
	// can be told from contention for the same locks.
	b.ReportMetric(float64(sharedShards(mine, theirs)), "shared-shards")
	b.ReportMetric(float64(sum[0])/n, "one-ns/op")
	b.ReportMetric(float64(sum[1])/n, "two-ns/op")
}

// sharedShards counts the shards that hold entries of both a and b.
func sharedShards(a, b []Handle) int {
	in := make(map[uint32]bool)
	for _, h := range a {
		in[h.shard()] = true
	}
	shared := make(map[uint32]bool)
	for _, h := range b {
		if in[h.shard()] {
			shared[h.shard()] = true
		}
	}
	return len(shared)
}

// controlBuf is the control work of BenchmarkRentReturnParallelPaired: a
// buffer in the first-level cache that add goes through, rounds times,
// loading, adding and storing every word. The sum it keeps makes each
// round depend on the one before, so none can be left out.
type controlBuf struct {
	w   [2048]uint64
	sum uint64
}

// controlRounds is one control block, a few milliseconds, about as long
// as a block of Rent+Returns.
const controlRounds = 4096

func (c *controlBuf) add(rounds int) {
	for r := range rounds {
		for i := range c.w {
			c.w[i] += uint64(i) ^ c.sum
		}
		c.sum += c.w[r&(len(c.w)-1)]
	}
}

// BenchmarkBaselineCTR is one AES-256-CTR pass with crypto/cipher over the
// same bytes, setup included: Rent+Return does two such passes.
func BenchmarkBaselineCTR(b *testing.B) {
	key := make([]byte, 32)
	blk, _ := aes.NewCipher(key)
	iv := make([]byte, 16)
	for _, size := range benchSizes {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				cipher.NewCTR(blk, iv).XORKeyStream(buf, buf)
			}
		})
	}
}

// BenchmarkBaselineCopy is a copy of the same bytes: the floor of any move.
func BenchmarkBaselineCopy(b *testing.B) {
	for _, size := range benchSizes {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			src, dst := make([]byte, size), make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				copy(dst, src)
			}
		})
	}
}

// BenchmarkBaselineGCM is AES-256-GCM Open then Seal of the same bytes with
// crypto/cipher, the AEAD built once, in place, without allocating: the
// floor a Rent+Return of an authenticated design would pay, and the
// denominator of the Rent+Return target. One nonce serves every
// iteration, which only a benchmark may do.
func BenchmarkBaselineGCM(b *testing.B) {
	b.Run("size=32", func(b *testing.B) {
		w := newGCMOpenSeal(b, 32)
		b.SetBytes(32)
		b.ReportAllocs()
		b.ResetTimer()
		w.run(b, b.N)
	})
}

// BenchmarkBaselineAESCTR is two passes of internal/aesctr over the same
// bytes, with the signal guard it picks by default for their length: the
// cipher work of one Rent+Return (decrypt, then encrypt under a fresh
// counter), without any of the bookkeeping around it.
func BenchmarkBaselineAESCTR(b *testing.B) {
	b.Run("size=32", func(b *testing.B) {
		w := newAESCTRPasses(b, 32)
		b.SetBytes(32)
		b.ReportAllocs()
		b.ResetTimer()
		w.run(b.N)
	})
}

// gcmOpenSeal is the work of BenchmarkBaselineGCM: AES-256-GCM Open then
// Seal of size bytes in place, with an AEAD built once.
type gcmOpenSeal struct {
	aead          cipher.AEAD
	nonce, sealed []byte
}

func newGCMOpenSeal(b *testing.B, size int) *gcmOpenSeal {
	blk, err := aes.NewCipher(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		b.Fatal(err)
	}
	nonce := make([]byte, aead.NonceSize())
	buf := make([]byte, size, size+aead.Overhead())
	return &gcmOpenSeal{aead, nonce, aead.Seal(buf[:0], nonce, buf, nil)}
}

// run does n Open+Seal pairs.
func (w *gcmOpenSeal) run(b *testing.B, n int) {
	for range n {
		pt, err := w.aead.Open(w.sealed[:0], w.nonce, w.sealed, nil)
		if err != nil {
			b.Fatal(err)
		}
		w.sealed = w.aead.Seal(pt[:0], w.nonce, pt, nil)
	}
}

// aesctrPasses is the work of BenchmarkBaselineAESCTR: two internal/aesctr
// passes over size bytes under consecutive counter runs.
type aesctrPasses struct {
	rk      *[aesctr.RoundKeysSize]byte
	salt    [8]byte
	scratch [16]byte
	buf     []byte
	ctr     uint64
}

func newAESCTRPasses(b *testing.B, size int) *aesctrPasses {
	if !aesctr.Supported() {
		b.Skip("no AES-NI assembly here")
	}
	w := &aesctrPasses{rk: new([aesctr.RoundKeysSize]byte), buf: make([]byte, size)} // rk: an allocation of its own, 16-byte aligned
	if err := aesctr.Expand(w.rk, new([32]byte)); err != nil {
		b.Fatal(err)
	}
	return w
}

// run does n pairs of passes.
func (w *aesctrPasses) run(n int) {
	rk, buf, ctr := w.rk, w.buf, w.ctr
	blocks := uint64(len(buf)+15) / 16
	for range n {
		aesctr.XOR(rk, &w.salt, ctr, buf, buf, &w.scratch)
		aesctr.XOR(rk, &w.salt, ctr+blocks, buf, buf, &w.scratch)
		ctr += blocks
	}
	w.ctr = ctr
}

// BenchmarkRentReturnPaired weighs Rent+Return of 32 B against its two
// baselines in the same moments: each iteration times a block of 256
// Rent+Returns, a block of 256 BenchmarkBaselineAESCTR pairs and a block of
// 256 BenchmarkBaselineGCM pairs, in an order that rotates, and reports the
// median over the iterations of the per-round quotients (x-aesctr,
// x-gcm). On a virtual machine whose speed drifts by 2x within seconds,
// separate benchmarks give ratios of medians with wide intervals; a
// quotient of blocks measured a few microseconds apart leaves the drift
// out. The work is exactly that of BenchmarkRentReturn/size=32 and the two
// baseline benchmarks.
func BenchmarkRentReturnPaired(b *testing.B) {
	b.Run("size=32", func(b *testing.B) {
		const size, block = 32, 256
		s := newBench(b)
		h, err := Alloc[byte](s, size)
		if err != nil {
			b.Fatal(err)
		}
		ctr, gcm := newAESCTRPasses(b, size), newGCMOpenSeal(b, size)
		sum, x := alternate(b,
			func() {
				for range block {
					rentReturn(b, s, h)
				}
			},
			func() { ctr.run(block) },
			func() { gcm.run(b, block) })
		xCTR, xGCM := x[0], x[1]
		n := float64(b.N * block)
		b.ReportMetric(median(xCTR), "x-aesctr")
		b.ReportMetric(median(xGCM), "x-gcm")
		b.ReportMetric(float64(sum[0])/n, "rent-return-ns")
		b.ReportMetric(float64(sum[1])/n, "aesctr-ns")
		b.ReportMetric(float64(sum[2])/n, "gcm-ns")
	})
}

// BenchmarkRentReturnPairedCTR weighs Rent+Return of 64 KiB and 1 MiB
// against two BenchmarkBaselineCTR passes of the same size as
// BenchmarkRentReturnPaired does at 32 B: each iteration times a block of
// Rent+Returns and a block of pairs of passes, in an order that alternates,
// and reports the median of the per-iteration quotients (x-ctr). The work
// is exactly that of BenchmarkRentReturn and twice BenchmarkBaselineCTR.
func BenchmarkRentReturnPairedCTR(b *testing.B) {
	for _, c := range []struct{ size, block int }{{65536, 16}, {1 << 20, 1}} {
		b.Run("size="+strconv.Itoa(c.size), func(b *testing.B) {
			s := newBench(b)
			h, err := Alloc[byte](s, c.size)
			if err != nil {
				b.Fatal(err)
			}
			blk, err := aes.NewCipher(make([]byte, 32))
			if err != nil {
				b.Fatal(err)
			}
			iv, buf := make([]byte, 16), make([]byte, c.size)
			// An iteration's time covers both blocks; MB/s counts the
			// Rent+Return block's bytes alone.
			b.SetBytes(int64(c.size * c.block))
			b.ReportAllocs()
			sum, x := alternate(b,
				func() {
					for range c.block {
						rentReturn(b, s, h)
					}
				},
				func() {
					for range c.block {
						cipher.NewCTR(blk, iv).XORKeyStream(buf, buf)
						cipher.NewCTR(blk, iv).XORKeyStream(buf, buf)
					}
				})
			xs := x[0]
			n := float64(b.N * c.block)
			b.ReportMetric(median(xs), "x-ctr")
			b.ReportMetric(float64(sum[0])/n, "rent-return-ns")
			b.ReportMetric(float64(sum[1])/n, "ctr-pair-ns")
		})
	}
}

// alternate runs b's loop, timing each of passes once per iteration in an
// order that rotates with the iteration, so that no pass always follows
// the same one. It returns each pass's total time and, for each pass after
// the first, the per-iteration quotients of the first pass's time over
// that pass's: passes timed moments apart, which the machine's drifting
// speed leaves comparable.
func alternate(b *testing.B, passes ...func()) (sum []time.Duration, x [][]float64) {
	sum, x = make([]time.Duration, len(passes)), make([][]float64, len(passes)-1)
	d := make([]time.Duration, len(passes))
	for i := 0; b.Loop(); i++ {
		for k := range passes {
			j := (i + k) % len(passes)
			t0 := time.Now()
			passes[j]()
			d[j] = time.Since(t0)
		}
		for j := range d {
			sum[j] += d[j]
		}
		for j := range x {
			x[j] = append(x[j], float64(d[0])/float64(d[j+1]))
		}
	}
	return sum, x
}

// median is the middle value of xs, which it sorts.
func median(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// record32 is a 32-byte record, moved by assignment: two 16-byte moves, the
// least any copy of it costs.
type record32 [32]byte

// BenchmarkBaselinePermuteCopy is the bare loop a shuffle of small entries
// is held against: copy every record of one heap buffer to a uniformly
// random place in a second one, clear it in the first, and do it again the
// other way. Each iteration draws a fresh permutation, as every Shuffle
// must (Fisher-Yates over math/rand/v2's ChaCha8, the generator Shuffle
// uses, called directly with no interface in between), and the draw is
// timed; BenchmarkBaselinePermuteCopyFixed reuses one permutation, which
// leaves the memory traffic alone. ns/entry is the same unit as
// BenchmarkShuffle's, so the two read as a ratio.
func BenchmarkBaselinePermuteCopy(b *testing.B) {
	for _, n := range []int{1000000, 100000} {
		b.Run(fmt.Sprintf("entries=%d/size=32", n), func(b *testing.B) {
			benchPermuteCopy(b, n, true)
		})
	}
}

// BenchmarkBaselinePermuteCopyFixed is BenchmarkBaselinePermuteCopy with one
// permutation drawn before the clock starts: the moves alone.
func BenchmarkBaselinePermuteCopyFixed(b *testing.B) {
	b.Run("entries=1000000/size=32", func(b *testing.B) {
		benchPermuteCopy(b, 1000000, false)
	})
}

func benchPermuteCopy(b *testing.B, n int, draw bool) {
	w := newPermuteWork(n)
	b.SetBytes(int64(n * len(record32{})))
	b.ReportAllocs()
	for b.Loop() {
		w.pass(draw)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/entry")
}

// permuteWork is the bare permute-copy loop's state: two buffers of
// records, both in memory before any clock starts, and a permutation.
type permuteWork struct {
	src, dst []record32
	perm     []uint32
	rng      *mrand.ChaCha8
}

func newPermuteWork(n int) *permuteWork {
	w := &permuteWork{src: make([]record32, n), dst: make([]record32, n), perm: make([]uint32, n), rng: mrand.NewChaCha8([32]byte{1})}
	for i := range w.src {
		w.src[i][0], w.dst[i][0] = byte(i), 1
	}
	drawPermutation(w.perm, w.rng)
	return w
}

// pass moves every record to its place in the other buffer, after drawing
// a fresh permutation if draw is set.
func (w *permuteWork) pass(draw bool) {
	if draw {
		drawPermutation(w.perm, w.rng)
	}
	permuteCopy(w.dst, w.src, w.perm)
	w.src, w.dst = w.dst, w.src
}

// permuteCopy moves src[k] to dst[perm[k]] and clears src[k].
func permuteCopy(dst, src []record32, perm []uint32) {
	for k, p := range perm {
		dst[p] = src[k]
		src[k] = record32{}
	}
}

// drawPermutation fills p with a uniformly random permutation of 0..len(p)-1
// by Fisher-Yates, each index drawn by Lemire's multiply-and-reject method,
// as math/rand/v2 draws IntN.
func drawPermutation(p []uint32, r *mrand.ChaCha8) {
	for k := range p {
		p[k] = uint32(k)
	}
	for k := len(p) - 1; k > 0; k-- {
		bound := uint64(k + 1)
		hi, lo := bits.Mul64(r.Uint64(), bound)
		if lo < bound {
			for thresh := -bound % bound; lo < thresh; {
				hi, lo = bits.Mul64(r.Uint64(), bound)
			}
		}
		p[k], p[hi] = p[hi], p[k]
	}
}

// BenchmarkBaselineCopyClear is the floor of a shuffle of large entries:
// copy each 64 KiB chunk of one heap buffer to a place in a second one
// (a random permutation of the chunks, drawn once), clear it in the first,
// and do it again the other way. Throughput (b.SetBytes) is in the same
// units as BenchmarkShuffle's, over the same bytes.
func BenchmarkBaselineCopyClear(b *testing.B) {
	for _, c := range []struct {
		name    string
		size, n int
	}{
		{"total=256MiB/size=65536", 65536, 256 << 20 / 65536},
		{"entries=1000/size=65536", 65536, 1000},
	} {
		b.Run(c.name, func(b *testing.B) {
			src, dst := make([]byte, c.size*c.n), make([]byte, c.size*c.n)
			for i := 0; i < len(src); i += 4096 {
				src[i], dst[i] = 1, 1 // both in memory before the clock starts
			}
			perm := make([]uint32, c.n)
			drawPermutation(perm, mrand.NewChaCha8([32]byte{2}))
			b.SetBytes(int64(c.size * c.n))
			b.ReportAllocs()
			for b.Loop() {
				copyClear(dst, src, perm, c.size)
				src, dst = dst, src
			}
		})
	}
}

// copyClear moves chunk k of src, of size bytes, to chunk perm[k] of dst and
// clears it in src.
func copyClear(dst, src []byte, perm []uint32, size int) {
	for k, p := range perm {
		from := src[k*size : (k+1)*size]
		copy(dst[int(p)*size:(int(p)+1)*size], from)
		clear(from)
	}
}

// BenchmarkMemory reports what 1,000,000 live 32-byte secrets cost in
// resident memory, metadata and Go heap included, as a ratio to their size.
func BenchmarkMemory(b *testing.B) {
	const n, size = 1000000, 32
	for b.Loop() {
		runtime.GC()
		debug.FreeOSMemory()
		before := rss(b)
		s, err := New()
		if err != nil {
			b.Fatal(err)
		}
		for range n {
			if _, err := Alloc[byte](s, size); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		after := rss(b)
		st := s.Stats()
		b.ReportMetric(float64(after-before)/float64(n*size), "rss/secret-bytes")
		b.ReportMetric(float64(st.MappedBytes)/float64(n*size), "mapped/secret-bytes")
		s.Close()
	}
}

// rss reads the resident set size from /proc/self/statm.
func rss(b *testing.B) int64 {
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Skip("no /proc/self/statm")
	}
	f := strings.Fields(string(raw))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// BenchmarkRentReturnDuringBackgroundShuffle measures Rent+Return of 32-byte
// entries while the background shuffler relocates 256 MiB or 1 GiB of 64 KiB
// entries continuously, and reports the latency percentiles of every
// operation of the run (p50-ns, p99-ns, each within 1/32 of the true value,
// and max-ns, exact) next to the time one full Shuffle of the same data
// takes: the pause a Rent would see behind it, and the machine's steal time
// during the run (steal-ms). Each latency includes two clock reads. The
// pause target is held against the 256 MiB case run for 3 seconds
// (bench/run.sh gives it -benchtime 3s).
func BenchmarkRentReturnDuringBackgroundShuffle(b *testing.B) {
	for _, c := range []struct {
		name  string
		total int
	}{{"total=256MiB/size=32", 256 << 20}, {"total=1GiB/size=32", 1 << 30}} {
		b.Run(c.name, func(b *testing.B) {
			s := newBench(b)
			const bigSize = 65536
			for range c.total / bigSize {
				if _, err := Alloc[byte](s, bigSize); err != nil {
					b.Fatal(err)
				}
			}
			small := make([]Handle, 1024)
			for i := range small {
				small[i], _ = Alloc[byte](s, 32)
			}
			start := time.Now()
			if err := s.Shuffle(); err != nil {
				b.Fatal(err)
			}
			full := time.Since(start)
			stop, err := s.StartBackgroundShuffle(context.Background(), 0)
			if err != nil {
				b.Fatal(err)
			}
			defer stop()
			var lat latencies
			steal0 := stealNanos()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				h := small[i&1023]
				i++
				t0 := time.Now()
				if _, err := RentSlice[byte](s, h); err != nil {
					b.Fatal(err)
				}
				if err := s.Return(h); err != nil {
					b.Fatal(err)
				}
				lat.add(time.Since(t0))
			}
			stop()
			b.ReportMetric(float64(lat.percentile(0.50)), "p50-ns")
			b.ReportMetric(float64(lat.percentile(0.99)), "p99-ns")
			b.ReportMetric(float64(lat.max), "max-ns")
			// CPU time the hypervisor took from the machine meanwhile: a
			// maximum it explains is not the library's.
			b.ReportMetric(float64(stealNanos()-steal0)/1e6, "steal-ms")
			b.ReportMetric(float64(full.Nanoseconds()), "full-shuffle-ns")
			st := s.Stats()
			b.ReportMetric(float64(st.BackgroundMax.Nanoseconds()), "longest-step-ns")
			b.ReportMetric(float64(st.BackgroundCycles), "cycles")
		})
	}
}

// latencies is a histogram of durations with 32 buckets per power of two,
// so that a run of any length keeps every sample, in fixed memory and
// without allocating, where a slice of samples would have to stop
// recording (and miss the pauses) once full.
type latencies struct {
	counts [64 + 58*32]uint64
	n      uint64
	max    int64 // nanoseconds
}

// latencyBucket is the bucket of v nanoseconds: v itself below 64, else 32
// buckets for each power of two.
func latencyBucket(v uint64) int {
	if v < 64 {
		return int(v)
	}
	e := bits.Len64(v) - 6 // v>>e is in [32, 64)
	return 64 + (e-1)*32 + int(v>>e) - 32
}

// latencyBucketTop is the largest value in bucket i.
func latencyBucketTop(i int) int64 {
	if i < 64 {
		return int64(i)
	}
	e := (i-64)/32 + 1
	top := uint64((i-64)%32 + 32)
	return int64((top+1)<<e - 1)
}

func (l *latencies) add(d time.Duration) {
	v := max(d.Nanoseconds(), 0)
	l.counts[min(latencyBucket(uint64(v)), len(l.counts)-1)]++
	l.n++
	l.max = max(l.max, v)
}

// percentile returns the top of the bucket that holds the sample of rank
// ceil(p*n): at most 1/32 above the true percentile, never below it.
func (l *latencies) percentile(p float64) int64 {
	rank := uint64(p * float64(l.n))
	if float64(rank) < p*float64(l.n) {
		rank++
	}
	rank = max(rank, 1)
	var seen uint64
	for i, c := range l.counts {
		if seen += c; seen >= rank {
			return min(latencyBucketTop(i), l.max)
		}
	}
	return l.max
}

// BenchmarkRentReturnCipher compares the cipher modes on Rent+Return.
func BenchmarkRentReturnCipher(b *testing.B) {
	for _, c := range []Cipher{AES256CTR, AES256GCM, ChaCha20Poly1305} {
		for _, size := range []int{32, 4096, 65536} {
			b.Run(fmt.Sprintf("cipher=%s/size=%d", c, size), func(b *testing.B) {
				benchRentReturn(b, size, WithCipher(c))
			})
		}
	}
}

// BenchmarkView is View+ReturnView of one 32-byte entry: alone, where every
// pair decrypts and encrypts again as Rent+Return does, and from every P at
// once, where views overlap and share one decryption.
func BenchmarkView(b *testing.B) {
	const size = 32
	b.Run("size=32/serial", func(b *testing.B) {
		s := newBench(b)
		h, _ := Alloc[byte](s, size)
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ViewSlice[byte](s, h); err != nil {
				b.Fatal(err)
			}
			if err := s.ReturnView(h); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("size=32/parallel", func(b *testing.B) {
		s := newBench(b)
		h, _ := Alloc[byte](s, size)
		b.SetBytes(size)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := ViewSliceContext[byte](context.Background(), s, h); err != nil {
					b.Error(err)
					return
				}
				if err := s.ReturnView(h); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// TestDrawPermutation checks that the permute-copy baseline draws
// permutations, and uniformly: each of the 6 orders of 3 comes up about
// equally often, and each of the 24 of 4 (a bias of one draw in the
// rejection step would show as some orders twice as likely as others).
func TestDrawPermutation(t *testing.T) {
	r := mrand.NewChaCha8([32]byte{3})
	for _, n := range []int{3, 4} {
		const draws = 240000
		seen := map[[4]uint32]int{}
		p := make([]uint32, n)
		for range draws {
			drawPermutation(p, r)
			var k [4]uint32
			copy(k[:], p)
			seen[k]++
		}
		orders := 6
		if n == 4 {
			orders = 24
		}
		if len(seen) != orders {
			t.Fatalf("n=%d: %d distinct orders, want %d", n, len(seen), orders)
		}
		want := draws / orders
		for k, c := range seen {
			var sorted [4]uint32
			copy(sorted[:], k[:n])
			slices.Sort(sorted[:n])
			for i := range n {
				if sorted[i] != uint32(i) {
					t.Fatalf("n=%d: %v is not a permutation", n, k[:n])
				}
			}
			// 5 standard deviations of a binomial count.
			if d := c - want; d*d > 25*want {
				t.Errorf("n=%d: order %v drawn %d times, want about %d", n, k[:n], c, want)
			}
		}
	}
}

// TestPermuteCopy checks that the baselines move every record to the place
// the permutation gives and clear the source.
func TestPermuteCopy(t *testing.T) {
	const n = 1000
	src, dst := make([]record32, n), make([]record32, n)
	for i := range src {
		src[i][0], src[i][31] = byte(i), byte(i>>8)
	}
	perm := make([]uint32, n)
	drawPermutation(perm, mrand.NewChaCha8([32]byte{4}))
	permuteCopy(dst, src, perm)
	for k, p := range perm {
		if dst[p][0] != byte(k) || dst[p][31] != byte(k>>8) || src[k] != (record32{}) {
			t.Fatalf("record %d: moved to %d as %x, left %x", k, p, dst[p], src[k])
		}
	}

	const size = 64
	bs, bd := make([]byte, n*size), make([]byte, n*size)
	for k := range n {
		bs[k*size], bs[k*size+size-1] = byte(k), byte(k>>8)
	}
	copyClear(bd, bs, perm, size)
	for k, p := range perm {
		if bd[int(p)*size] != byte(k) || bd[int(p)*size+size-1] != byte(k>>8) {
			t.Fatalf("chunk %d not at %d", k, p)
		}
	}
	if slices.ContainsFunc(bs, func(c byte) bool { return c != 0 }) {
		t.Fatal("copyClear left bytes in the source")
	}
}

// TestLatencies checks the pause benchmark's histogram against the sorted
// samples: every percentile within 1/32 above the true one, the maximum
// exact.
func TestLatencies(t *testing.T) {
	r := mrand.New(mrand.NewPCG(5, 6))
	var l latencies
	xs := make([]int64, 0, 100000)
	for range cap(xs) {
		v := int64(r.ExpFloat64() * 300)
		if r.IntN(1000) == 0 {
			v = 40e6 + r.Int64N(1e6) // a rare pause
		}
		xs = append(xs, v)
		l.add(time.Duration(v))
	}
	slices.Sort(xs)
	for _, p := range []float64{0.01, 0.5, 0.99, 0.999, 1} {
		rank := int(math.Ceil(p*float64(len(xs)))) - 1
		want, got := xs[rank], l.percentile(p)
		if got < want || float64(got) > float64(want)*(1+1.0/32)+1 {
			t.Errorf("p%g = %d, want %d to %d", p*100, got, want, int64(float64(want)*(1+1.0/32)))
		}
	}
	if l.max != xs[len(xs)-1] {
		t.Errorf("max = %d, want %d", l.max, xs[len(xs)-1])
	}
	for i := range len(l.counts) - 1 {
		if latencyBucket(uint64(latencyBucketTop(i))) != i || latencyBucket(uint64(latencyBucketTop(i)+1)) != i+1 {
			t.Fatalf("bucket %d ends at %d, which is not where bucket %d begins", i, latencyBucketTop(i), i+1)
		}
	}
}

func TestSharedShards(t *testing.T) {
	hs := func(shards ...uint32) []Handle {
		var out []Handle
		for i, k := range shards {
			out = append(out, makeHandle(1, k, uint32(i), 1))
		}
		return out
	}
	for _, c := range []struct {
		a, b []Handle
		want int
	}{
		{hs(0, 2, 4, 6), hs(1, 3, 5, 7), 0},
		{hs(0, 0, 2), hs(2, 2, 2, 0), 2},
		{hs(3), hs(3, 3), 1},
		{nil, hs(1), 0},
	} {
		if got := sharedShards(c.a, c.b); got != c.want {
			t.Errorf("sharedShards(%v, %v) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
