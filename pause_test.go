package memshuffle

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// BenchmarkPauseBackground measures the latency of each Rent+Return of a
// 32-byte entry while other work runs, and reports its percentiles, the
// maximum and how many samples took over a millisecond. Run it with
// -benchtime 3s: the maximum is a property of the run's length.
//
// Two controls in the same run tell the library's pauses from the
// machine's: control=heap times a mutex-protected 32-byte copy on the Go
// heap with nothing else running (what the machine alone does to the
// timing loop: vCPU steal, descheduling by other processes), and
// control=memmove the same with a goroutine copying 256 MiB in 64 KiB
// steps between heap buffers (the memory traffic of a background cycle,
// without the library's locks), and control=memmove+map with that
// goroutine also mapping, locking and unmapping 2 MiB for every 2 MiB it
// copies, as the background shuffler does for its arenas. The other sub-benchmarks hold 256 MiB in
// 64 KiB entries: quiet, with nothing running; background, with the
// background shuffler moving it back to back; rotation, with
// WithKeyRotation re-encrypting it every millisecond.
//
// Each also reports how many of the pauses over a millisecond the timing
// thread spent at least half of waiting on the system's run queue
// (over-1ms-queued, from /proc/self/task/TID/schedstat): ready to run, with
// no CPU to run on, because of other processes, the hypervisor or the
// process's own other threads. A goroutine that resumed on another thread
// (over-1ms-moved, most often preempted by the runtime as the pause ended)
// is measured on the thread it ran on before. It reports the steal time of the machine's
// CPUs (steal-ms, from /proc/stat), the process's involuntary context
// switches (nvcsw), the garbage collections during the run (gcs) and, where
// the library ran, the longest a background step or a rotation held a
// shard's lock (hold-max-ns).
//
// With MEMSHUFFLE_PAUSE_TRACE set to a directory, an execution trace flight
// recorder runs along and the last seconds before the first few samples over
// a millisecond are written there, for go tool trace.
func BenchmarkPauseBackground(b *testing.B) {
	const total, bigSize, size = 256 << 20, 64 << 10, 32
	b.Run("control=heap/size=32", func(b *testing.B) {
		pauseLoop(b, nil, heapOp(nil))
	})
	b.Run("control=memmove/total=256MiB/size=32", func(b *testing.B) {
		stop := memmoveLoad(total, stepBytes, 0)
		defer stop()
		pauseLoop(b, nil, heapOp(nil))
	})
	b.Run("control=memmove+map/total=256MiB/size=32", func(b *testing.B) {
		stop := memmoveLoad(total, stepBytes, 2<<20)
		defer stop()
		pauseLoop(b, nil, heapOp(nil))
	})
	b.Run("control=memmove+locks/total=256MiB/size=32", func(b *testing.B) {
		var locks [8]sync.Mutex
		stop := memmoveLoadLocked(total, stepBytes, locks[:])
		defer stop()
		pauseLoop(b, nil, heapOp(locks[:]))
	})
	for _, c := range []struct {
		name   string
		opts   []Option
		bg     bool
		rotate bool
	}{
		{"quiet", nil, false, false},
		{"background", nil, true, false},
		{"rotation", []Option{WithKeyRotation(time.Millisecond)}, false, true},
	} {
		b.Run(fmt.Sprintf("total=256MiB/size=32/%s", c.name), func(b *testing.B) {
			s := newBench(b, c.opts...)
			for range total / bigSize {
				if _, err := Alloc[byte](s, bigSize); err != nil {
					b.Fatal(err)
				}
			}
			small := make([]Handle, 1024)
			for i := range small {
				var err error
				if small[i], err = Alloc[byte](s, size); err != nil {
					b.Fatal(err)
				}
			}
			var holds latHist
			var holdsMu sync.Mutex
			if c.bg {
				afterStep = func(d time.Duration) {
					holdsMu.Lock()
					holds.add(d)
					holdsMu.Unlock()
				}
				defer func() { afterStep = nil }()
				stop, err := s.StartBackgroundShuffle(context.Background(), 0)
				if err != nil {
					b.Fatal(err)
				}
				defer stop()
			}
			i := 0
			pauseLoop(b, s, func() error {
				h := small[i&1023]
				i++
				if _, err := RentSlice[byte](s, h); err != nil {
					return err
				}
				return s.Return(h)
			})
			st := s.Stats()
			if c.bg {
				b.ReportMetric(float64(st.BackgroundCycles), "cycles")
				holdsMu.Lock()
				b.ReportMetric(float64(holds.above(time.Millisecond)), "holds-over-1ms")
				b.ReportMetric(float64(holds.percentile(0.99)), "hold-p99-ns")
				holdsMu.Unlock()
			}
			if c.rotate {
				b.ReportMetric(float64(rotationHoldsAbove(s, time.Millisecond)), "holds-over-1ms")
				b.ReportMetric(float64(s.rotator.holds.percentile(0.99)), "hold-p99-ns")
			}
			if st.KeyRotations > 0 {
				b.ReportMetric(float64(st.KeyRotations), "rotations")
			}
		})
	}
}

// heapOp is the heap-side equivalent of a 32-byte Rent+Return: a lock, a
// copy in and a copy out, under each of locks in turn (one of its own when
// none are given).
func heapOp(locks []sync.Mutex) func() error {
	if len(locks) == 0 {
		locks = make([]sync.Mutex, 1)
	}
	var store, work [32]byte
	i := 0
	return func() error {
		mu := &locks[i%len(locks)]
		i++
		mu.Lock()
		work = store
		work[0]++
		store = work
		mu.Unlock()
		return nil
	}
}

// memmoveLoad starts a goroutine that copies total bytes between two heap
// buffers in steps of step bytes, over and over, yielding between steps as
// the background shuffler does; the function it returns stops it. With
// mapSize > 0 it also maps, locks and unmaps a region of mapSize bytes
// each time it has copied that many, as the background shuffler maps
// fresh arenas: the system's work for memory, with no lock of the
// library's held.
func memmoveLoad(total, step, mapSize int) (stop func()) {
	src, dst := make([]byte, total), make([]byte, total)
	for i := range src {
		src[i] = byte(i)
	}
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			for off := 0; off < total; off += step {
				select {
				case <-quit:
					return
				default:
				}
				copy(dst[off:off+step], src[off:off+step])
				clear(src[off : off+step])
				if mapSize > 0 && (off+step)%mapSize == 0 {
					if r, err := osmem.Map(mapSize, osmem.Flags{Lock: true}); err == nil {
						_ = osmem.Unmap(r)
					}
				}
				runtime.Gosched()
			}
			src, dst = dst, src
		}
	}()
	return func() { close(quit); <-done }
}

// memmoveLoadLocked is memmoveLoad holding one of locks, in turn, for each
// step, as the background shuffler holds a shard's lock: the lock traffic
// of a background cycle without the library.
func memmoveLoadLocked(total, step int, locks []sync.Mutex) (stop func()) {
	src, dst := make([]byte, total), make([]byte, total)
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for k := 0; ; k++ {
			for off := 0; off < total; off += step {
				select {
				case <-quit:
					return
				default:
				}
				mu := &locks[(off/step)%len(locks)]
				mu.Lock()
				copy(dst[off:off+step], src[off:off+step])
				clear(src[off : off+step])
				mu.Unlock()
				runtime.Gosched()
			}
			src, dst = dst, src
		}
	}()
	return func() { close(quit); <-done }
}

// pauseLoop times op once per b.Loop iteration and reports the
// distribution, with what the machine and the runtime did meanwhile.
func pauseLoop(b *testing.B, s *Shuffler, op func() error) {
	var fr *trace.FlightRecorder
	dir := os.Getenv("MEMSHUFFLE_PAUSE_TRACE")
	if dir != "" {
		fr = trace.NewFlightRecorder(trace.FlightRecorderConfig{MinAge: 2 * time.Second, MaxBytes: 64 << 20})
		if err := fr.Start(); err != nil {
			b.Fatal(err)
		}
		defer fr.Stop()
	}
	snaps, over, longest := 0, 0, time.Duration(0)
	// Pauses over a millisecond for which the timing thread waited on the
	// system's run queue for at least half the pause: the machine's.
	var sched schedWindow
	overQueued, overMoved, n := 0, 0, 0
	// A histogram rather than every sample: a large buffer would raise the
	// heap goal and hide what the collector does to a small program.
	var lat latHist
	steal0, nv0, gc0 := stealNanos(), involuntarySwitches(), gcCycles()
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if n++; n%16384 == 1 {
			sched.mark()
		}
		t0 := time.Now()
		if err := op(); err != nil {
			b.Fatal(err)
		}
		d := time.Since(t0)
		lat.add(d)
		longest = max(longest, d)
		if d > time.Millisecond {
			over++
			if trace.IsEnabled() {
				// Logged first, so the event marks the sample's end.
				trace.Log(context.Background(), "pause-ns", strconv.FormatInt(d.Nanoseconds(), 10))
			}
			q, moved, ok := sched.waitedSince()
			if ok && q >= d/2 {
				overQueued++
			}
			if moved {
				overMoved++
			}
			sched.mark()
		}
		if fr != nil && d > time.Millisecond && snaps < 3 {
			snaps++
			// Let the flight recorder see what follows the pause too.
			time.Sleep(50 * time.Millisecond)
			name := filepath.Join(dir, strings.ReplaceAll(b.Name(), "/", "_")+fmt.Sprintf("-%d-%dus.trace", snaps, d.Microseconds()))
			if f, err := os.Create(name); err == nil {
				_, _ = fr.WriteTo(f)
				f.Close()
				b.Logf("pause of %v: trace in %s", d, name)
			}
		}
	}
	elapsed := time.Since(start)
	steal, nv, gcs := stealNanos()-steal0, involuntarySwitches()-nv0, gcCycles()-gc0
	pct := func(p float64) float64 { return float64(lat.percentile(p)) }
	b.ReportMetric(pct(0.50), "p50-ns")
	b.ReportMetric(pct(0.99), "p99-ns")
	b.ReportMetric(pct(0.999), "p999-ns")
	b.ReportMetric(float64(longest.Nanoseconds()), "max-ns")
	b.ReportMetric(float64(over), "over-1ms")
	b.ReportMetric(float64(overQueued), "over-1ms-queued")
	b.ReportMetric(float64(overMoved), "over-1ms-moved")
	b.ReportMetric(elapsed.Seconds(), "run-s")
	b.ReportMetric(float64(steal)/1e6, "steal-ms")
	b.ReportMetric(float64(nv), "nvcsw")
	b.ReportMetric(float64(gcs), "gcs")
	if s != nil {
		hold := max(s.Stats().BackgroundMax, rotationHoldMax(s))
		b.ReportMetric(float64(hold.Nanoseconds()), "hold-max-ns")
	}
}

// latHist counts durations in buckets 1/32 of a power of two wide: exact
// below 64 ns, within about 3% above.
type latHist struct {
	n     [64 * 32]uint64
	total uint64
}

func (h *latHist) add(d time.Duration) {
	h.n[latBucket(d)]++
	h.total++
}

// latBucket is the index of d's bucket.
func latBucket(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < 64 {
		return int(v)
	}
	e := uint64(bits.Len64(v) - 6)
	return int(e*32 + v>>e)
}

// percentile returns the lower bound, in ns, of the bucket the p-th
// fraction of the durations falls in.
func (h *latHist) percentile(p float64) int64 {
	want, seen := uint64(p*float64(h.total)), uint64(0)
	for i, c := range h.n {
		if seen += c; seen > want {
			if i < 64 {
				return int64(i)
			}
			e := i/32 - 1
			return int64(i-e*32) << e
		}
	}
	return 0
}

// above counts the durations in the buckets above d's.
func (h *latHist) above(d time.Duration) uint64 {
	var n uint64
	for _, c := range h.n[latBucket(d)+1:] {
		n += c
	}
	return n
}

// rotationHoldsAbove counts the holds of a shard lock by rotations of s
// that lasted 2^k ns or more, for the least such 2^k above d.
func rotationHoldsAbove(s *Shuffler, d time.Duration) uint64 {
	var n uint64
	for k := bits.Len64(uint64(d)) + 1; k < len(s.rotator.holds.hist); k++ {
		n += s.rotator.holds.hist[k].Load()
	}
	return n
}

// stealNanos is the steal time of all the machine's CPUs so far, from
// /proc/stat, or 0 where there is none.
func stealNanos() int64 {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0
	}
	// cpu user nice system idle iowait irq softirq steal ...
	fields := strings.Fields(sc.Text())
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0
	}
	ticks, _ := strconv.ParseInt(fields[8], 10, 64)
	return ticks * 1e7 // USER_HZ is 100 on Linux
}

// involuntarySwitches is how often the system has taken a CPU from a
// thread of this process, summed over /proc/self/task/*/status, or 0 where
// that is not known.
func involuntarySwitches() int64 {
	tasks, _ := filepath.Glob("/proc/self/task/*/status")
	var n int64
	for _, t := range tasks {
		raw, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(raw)) {
			if v, ok := strings.CutPrefix(line, "nonvoluntary_ctxt_switches:"); ok {
				k, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += k
			}
		}
	}
	return n
}

// gcCycles is the number of completed garbage collections so far.
func gcCycles() uint64 {
	m := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(m)
	return m[0].Value.Uint64()
}

// TestLatHist checks the pause benchmarks' histogram against exact
// percentiles of known samples.
func TestLatHist(t *testing.T) {
	var h latHist
	var all []int64
	for v := int64(1); v < 5e9; v = v*11/10 + 1 {
		h.add(time.Duration(v))
		all = append(all, v)
	}
	for _, p := range []float64{0, 0.5, 0.9, 0.99, 0.999} {
		exact := all[int(p*float64(len(all)))]
		got := h.percentile(p)
		if got > exact || float64(got) < float64(exact)*0.96 {
			t.Errorf("p%v: got %d, want %d rounded down by at most 4%%", p*100, got, exact)
		}
	}
	var over uint64
	for _, v := range all {
		if v > 1e6 {
			over++
		}
	}
	// Only the bucket holding 1 ms itself can be left out.
	if got := h.above(time.Millisecond); got > over || got+2 < over {
		t.Errorf("above 1ms: got %d, want %d", got, over)
	}
}

// TestStepMapsNothingUnderLock: a background step never maps an arena
// while it holds the shard lock. It adopts the spare its cycle mapped, and
// where it needs a fresh arena and has none it stops and asks for one,
// moving nothing more; every entry stays readable throughout.
func TestStepMapsNothingUnderLock(t *testing.T) {
	s := newTest(t, WithShards(1), WithLockMode(LockNone), WithArenaSize(16<<10))
	want := map[Handle][]byte{}
	for i := range 200 {
		v := bytes.Repeat([]byte{byte(i + 1)}, 1000)
		h, err := CopyFrom(s, bytes.Clone(v)) // CopyFrom wipes its source
		if err != nil {
			t.Fatal(err)
		}
		want[h] = v
	}
	sh := &s.shards[0]
	var later store.UnmapList
	sh.mu.Lock()
	sh.startCycle(sh.permutation(sh.bgOrder, int(sh.Slots.Len())), &later)
	sh.mu.Unlock()
	later.UnmapAll(&s.aux)
	var spare *osmem.Region
	asked := 0
	for more := true; more; {
		sh.mu.Lock()
		known := map[*osmem.Region]bool{spare: true}
		for _, a := range sh.Arenas.List() {
			if a != nil {
				known[a.Reg] = true
			}
		}
		const spareRefused = false
		var n int
		more, n = sh.step(&later, &spare, spareRefused)
		for _, a := range sh.Arenas.List() {
			if a != nil && !known[a.Reg] {
				sh.mu.Unlock()
				t.Fatalf("a step mapped an arena of %d bytes under the lock", len(a.Mem))
			}
		}
		sh.mu.Unlock()
		later.UnmapAll(&s.aux)
		mustCheck(t, s)
		if n > 0 {
			if spare != nil && len(spare.Data) >= n {
				t.Fatalf("a step asked for %d bytes with a spare of %d", n, len(spare.Data))
			}
			if spare != nil {
				if err := s.aux.Unmap(spare); err != nil {
					t.Fatal(err)
				}
			}
			asked++
			var err error
			if spare, err = s.mapAux(n); err != nil {
				t.Fatal(err)
			}
		}
	}
	if spare != nil {
		if err := s.aux.Unmap(spare); err != nil {
			t.Fatal(err)
		}
	}
	// 200 KB in arenas of 16 KiB, starting with none.
	if asked < 12 {
		t.Fatalf("steps asked for %d spares, want at least 12", asked)
	}
	for h, v := range want {
		if got := readAll(t, s, h); !bytes.Equal(got, v) {
			t.Fatalf("entry changed")
		}
	}
}
