package memshuffle

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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
	for _, live := range []int{10, 10000, 1000000} {
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
func BenchmarkShuffle(b *testing.B) {
	cases := []struct {
		name       string
		size, n    int
		perEntryNs bool
	}{
		{"entries=1000000/size=32", 32, 1000000, true},
		{"total=1GiB/size=65536", 65536, 1 << 30 / 65536, false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s := newBench(b)
			for range c.n {
				if _, err := Alloc[byte](s, c.size); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.Shuffle(); err != nil { // first one maps the sizes it keeps
				b.Fatal(err)
			}
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
// entries while the background shuffler relocates 1 GiB of 64 KiB entries
// continuously, and reports the latency percentiles next to the time one
// full Shuffle of that 1 GiB takes: the pause a Rent would see behind it.
func BenchmarkRentReturnDuringBackgroundShuffle(b *testing.B) {
	b.Run("total=1GiB/size=32", func(b *testing.B) {
		s := newBench(b)
		const bigSize, big = 65536, 1 << 30 / 65536
		for range big {
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
		lat := make([]time.Duration, 0, 1<<20)
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
			if len(lat) < cap(lat) {
				lat = append(lat, time.Since(t0))
			}
		}
		stop()
		slices.Sort(lat)
		pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) }
		b.ReportMetric(pct(0.50), "p50-ns")
		b.ReportMetric(pct(0.99), "p99-ns")
		b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds()), "max-ns")
		b.ReportMetric(float64(full.Nanoseconds()), "full-shuffle-ns")
		st := s.Stats()
		b.ReportMetric(float64(st.BackgroundMax.Nanoseconds()), "longest-step-ns")
		b.ReportMetric(float64(st.BackgroundCycles), "cycles")
	})
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
