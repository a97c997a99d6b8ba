//go:build unix

package memshuffle

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// processCPU is the CPU time the process has used, user and system.
func processCPU(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Skip(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestBackgroundRestsAcrossCycles: cycles run back to back (interval 0)
// over a Shuffler so small that one cycle is far shorter than a burst must
// still rest once their work adds up to a burst, so the background stays
// under the half of one CPU its pacer allows. Paced, it takes about a
// tenth; a pacer that starts afresh with every cycle never rests there
// and takes all the CPU it can get.
//
// This is a bound on CPU use, not on any latency. The limit, 0.6 of one
// CPU, is above the pacer's own bound of half a CPU (which it would reach
// with timers that slept exactly as long as asked), and below the 0.82 of
// one CPU an unpaced background took here.
func TestBackgroundRestsAcrossCycles(t *testing.T) {
	s := newTest(t, WithShards(1))
	if _, err := Alloc[byte](s, 32); err != nil {
		t.Fatal(err)
	}
	stop, err := s.StartBackgroundShuffle(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	waitFor(t, "a cycle", func() bool { return s.Stats().BackgroundCycles > 0 })
	cpu0, wall0, cycles0 := processCPU(t), time.Now(), s.Stats().BackgroundCycles
	time.Sleep(300 * time.Millisecond)
	cpu, wall := processCPU(t)-cpu0, time.Since(wall0)
	cycles := s.Stats().BackgroundCycles - cycles0
	stop()
	share := float64(cpu) / float64(wall)
	t.Logf("%d cycles in %v took %v of CPU: %.2f of one CPU", cycles, wall, cpu, share)
	if share > 0.6 {
		t.Errorf("back-to-back cycles took %.2f of one CPU; paced they take at most half", share)
	}
}

// TestScheduledWorkRestsAtTinyIntervals is TestBackgroundRestsAcrossCycles
// for work that waits between runs: WithKeyRotation and the background
// shuffler at an interval of a microsecond, over one entry, so each run
// is far shorter than a burst and each wait far shorter than a rest. The
// waits must not count as rests that pay off the bursts: counted so, and
// with a pacer of its own for every rotation, scheduled rotation took
// 0.67 of one CPU.
func TestScheduledWorkRestsAtTinyIntervals(t *testing.T) {
	for _, c := range []struct {
		name  string
		opts  []Option
		count func(Stats) uint64
	}{
		{"rotation", []Option{WithKeyRotation(time.Microsecond)}, func(st Stats) uint64 { return st.KeyRotations }},
		{"background", []Option{WithBackgroundShuffle(time.Microsecond)}, func(st Stats) uint64 { return st.BackgroundCycles }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newTest(t, append(c.opts, WithShards(1))...)
			if _, err := Alloc[byte](s, 32); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "a run", func() bool { return c.count(s.Stats()) > 0 })
			cpu0, wall0, runs0 := processCPU(t), time.Now(), c.count(s.Stats())
			time.Sleep(300 * time.Millisecond)
			cpu, wall := processCPU(t)-cpu0, time.Since(wall0)
			runs := c.count(s.Stats()) - runs0
			share := float64(cpu) / float64(wall)
			t.Logf("%d runs in %v took %v of CPU: %.2f of one CPU", runs, wall, cpu, share)
			if share > 0.6 {
				t.Errorf("runs a microsecond apart took %.2f of one CPU; paced they take at most half", share)
			}
		})
	}
}

// BenchmarkBackgroundCycle measures what the background shuffler's rests
// and small steps cost it: the time one background cycle over 256 MiB of
// 64 KiB entries takes with nothing else running (ns/op is one cycle, MB/s
// the bytes it relocates per second), and the share of one CPU the
// process used meanwhile (cpu-share). Run it with -benchtime 2x or more:
// the first cycle starts with the benchmark.
func BenchmarkBackgroundCycle(b *testing.B) {
	const total, bigSize = 256 << 20, 64 << 10
	b.Run("total=256MiB/size=65536", func(b *testing.B) {
		s := newBench(b)
		for range total / bigSize {
			if _, err := Alloc[byte](s, bigSize); err != nil {
				b.Fatal(err)
			}
		}
		stop, err := s.StartBackgroundShuffle(context.Background(), 0)
		if err != nil {
			b.Fatal(err)
		}
		defer stop()
		// Start at a cycle's start.
		next := s.Stats().BackgroundCycles + 1
		for s.Stats().BackgroundCycles < next {
			time.Sleep(time.Millisecond)
		}
		cpu0, t0 := processCPU(b), time.Now()
		b.SetBytes(total)
		b.ReportAllocs()
		for b.Loop() {
			next++
			for s.Stats().BackgroundCycles < next {
				time.Sleep(time.Millisecond)
			}
		}
		b.ReportMetric(float64(processCPU(b)-cpu0)/float64(time.Since(t0)), "cpu-share")
	})
}
