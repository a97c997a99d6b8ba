package report

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Status says whether a target holds.
type Status int

const (
	Missing Status = iota // a benchmark it needs is not in the run
	Pass
	Fail
)

func (s Status) String() string {
	switch s {
	case Pass:
		return "yes"
	case Fail:
		return "**no**"
	}
	return "not measured"
}

// Target is one promise of the issue, checked against a run.
type Target struct {
	What     string  // what is promised
	Goal     string  // the limit, in words ("≤ 100 ns")
	Measured string  // the value the run gives, or why there is none
	Value    float64 // the value compared with the limit
	// Lo and Hi bound Value from the 95% confidence intervals of the
	// medians it is made of (for a ratio, the extremes of the quotient);
	// infinite when there are too few samples for an interval.
	Lo, Hi float64
	// Uncertain reports that [Lo, Hi] holds values on both sides of the
	// goal: the run cannot tell whether the target holds.
	Uncertain bool
	From      []string // the benchmarks the value comes from
	Status    Status

	format func(float64) string
}

// CI writes the target's confidence interval, or "–" when there is none.
func (t Target) CI() string {
	if t.Status == Missing || isInf(t.Lo) || isInf(t.Hi) {
		return "–"
	}
	return t.format(t.Lo) + " – " + t.format(t.Hi)
}

// Runs is what the targets are computed from: the core module's
// benchmarks, the comparison module's, and the token cache workload's
// summaries (see ParseCache). A nil Set counts as an empty run.
type Runs struct {
	Core, Cmp, Cache *Set
}

// source names one of the Runs.
type source int

const (
	fromCore source = iota
	fromCmp
	fromCache
)

func (r Runs) set(src source) *Set {
	switch src {
	case fromCmp:
		return r.Cmp
	case fromCache:
		return r.Cache
	}
	return r.Core
}

// A target spec computes one value from a run and holds it against a
// limit.
type targetSpec struct {
	what   string
	limit  float64
	atMost bool // the value must be ≤ limit; otherwise ≥ limit
	goal   string
	format func(float64) string
	value  func(Runs) (estimate, []string, error)
}

// estimate is a median, or a ratio of medians, with its bounds.
type estimate struct{ v, lo, hi float64 }

const (
	coreRR        = "BenchmarkRentReturn/size="
	coreCTR       = "BenchmarkBaselineCTR/size="
	coreLive      = "BenchmarkRentReturnLive/live=%d/onreturn=%v"
	coreAlloc32   = "BenchmarkAlloc/size=32"
	coreShufBig   = "BenchmarkShuffle/total=1GiB/size=65536"
	coreShuf256   = "BenchmarkShuffle/total=256MiB/size=65536"
	coreShuf32    = "BenchmarkShuffle/entries=1000000/size=32"
	coreShuf1k    = "BenchmarkShuffle/entries=1000/size=65536"
	coreShuf100k  = "BenchmarkShuffle/entries=100000/size=32"
	coreMemory    = "BenchmarkMemory"
	coreParOwn    = "BenchmarkRentReturnParallel/entries=own"
	coreParPaired = "BenchmarkRentReturnParallelPaired"
	coreGCM32     = "BenchmarkBaselineGCM/size=32"
	coreAESCTR32  = "BenchmarkBaselineAESCTR/size=32"
	corePaired32  = "BenchmarkRentReturnPaired/size=32"
	corePairedCTR = "BenchmarkRentReturnPairedCTR/size="
	corePerm1M    = "BenchmarkBaselinePermuteCopy/entries=1000000/size=32"
	coreShufPair  = "BenchmarkShufflePaired/entries=1000000/size=32"
	corePerm100k  = "BenchmarkBaselinePermuteCopy/entries=100000/size=32"
	coreCC256     = "BenchmarkBaselineCopyClear/total=256MiB/size=65536"
	coreCC1k      = "BenchmarkBaselineCopyClear/entries=1000/size=65536"
	coreBGPause   = "BenchmarkRentReturnDuringBackgroundShuffle/total=256MiB/size=32"
	coreRotPause  = "BenchmarkRentReturnDuringKeyRotation/total=256MiB/size=32/shards=8"
	corePauseOff  = coreRotPause + "/rotation=off"
	cmpRR         = "BenchmarkRentReturn/lib=%s/size=%d"
	cacheShuffler = CacheName + "store=memshuffle"
	cacheMap      = CacheName + "store=map-rwmutex"
)

// one is a value read straight from one benchmark: the median of its
// samples.
func one(name, unit string, src source) func(Runs) (estimate, []string, error) {
	return func(r Runs) (estimate, []string, error) {
		m, err := r.set(src).Summary(name, unit)
		return estimate{m.Median, m.Lo, m.Hi}, []string{name}, err
	}
}

// worst is the largest of a benchmark's samples: for a bound that every run
// must keep, not a typical one. It has no interval.
func worst(name, unit string, src source) func(Runs) (estimate, []string, error) {
	return func(r Runs) (estimate, []string, error) {
		from := []string{name}
		b := r.set(src).Bench(name)
		if b == nil {
			return estimate{}, from, fmt.Errorf("%s is missing from the run", name)
		}
		xs := b.Samples[unit]
		if len(xs) == 0 {
			return estimate{}, from, fmt.Errorf("%s has no %s figures", name, unit)
		}
		return estimate{slices.Max(xs), math.Inf(-1), math.Inf(1)}, from, nil
	}
}

// side is one operand of a ratio: a benchmark's median in a unit.
type side struct {
	name, unit string
	src        source
}

// quotient is num's median over den's median times denScale. Its bounds
// are the smallest and largest quotients the two confidence intervals
// allow.
func quotient(num, den side, denScale float64) func(Runs) (estimate, []string, error) {
	return func(r Runs) (estimate, []string, error) {
		from := []string{num.name, den.name}
		n, err := r.set(num.src).Summary(num.name, num.unit)
		if err != nil {
			return estimate{}, from, err
		}
		d, err := r.set(den.src).Summary(den.name, den.unit)
		if err != nil {
			return estimate{}, from, err
		}
		if d.Median <= 0 {
			return estimate{}, from, fmt.Errorf("%s is zero", den.name)
		}
		e := estimate{n.Median / (d.Median * denScale), math.Inf(-1), math.Inf(1)}
		if !isInf(n.Lo) && !isInf(n.Hi) && !isInf(d.Lo) && !isInf(d.Hi) && d.Lo > 0 {
			e.lo, e.hi = n.Lo/(d.Hi*denScale), n.Hi/(d.Lo*denScale)
		}
		return e, from, nil
	}
}

// ratio is num's median over den's median (times denScale), both in ns/op.
func ratio(num, den string, denScale float64, numCmp, denCmp bool) func(Runs) (estimate, []string, error) {
	src := func(c bool) source {
		if c {
			return fromCmp
		}
		return fromCore
	}
	return quotient(side{num, "ns/op", src(numCmp)}, side{den, "ns/op", src(denCmp)}, denScale)
}

func targetSpecs() []targetSpec {
	ns := func(v float64) string { return FormatTime(v * 1e-9) }
	times := func(v float64) string { return FormatRatio(v) }
	count := func(v float64) string { return fmt.Sprintf("%g", v) }
	gbps := func(v float64) string { return fmt.Sprintf("%.2f GB/s", v/1e3) } // MB/s in, GB/s out
	nsEntry := func(v float64) string { return fmt.Sprintf("%.1f ns/entry", v) }

	return []targetSpec{
		{"Rent+Return of 32 B: time", 100, true, "≤ 100 ns", ns,
			one(coreRR+"32", "ns/op", fromCore)},
		{"Rent+Return of 32 B: allocations", 0, true, "0 allocs/op", count,
			one(coreRR+"32", "allocs/op", fromCore)},
		{"Rent+Return of 32 B vs memguard Enclave Open+Destroy (same binary)", 500, false, "≥ 500× faster", times,
			ratio(fmt.Sprintf(cmpRR, "memguard-enclave", 32), fmt.Sprintf(cmpRR, "memshuffle", 32), 1, true, true)},
		// Blocks of each timed moments apart, as for #14.1
		// (BenchmarkRentReturnPairedCTR).
		{"Rent+Return of 64 KiB vs two AES-256-CTR passes (2 × BenchmarkBaselineCTR; paired blocks)", 1.25, true, "≤ 1.25×", times,
			one(corePairedCTR+"65536", "x-ctr", fromCore)},
		{"Rent+Return of 1 MiB vs two AES-256-CTR passes (2 × BenchmarkBaselineCTR; paired blocks)", 1.25, true, "≤ 1.25×", times,
			one(corePairedCTR+"1048576", "x-ctr", fromCore)},
		{"Rent+Return with 1,000,000 live entries vs 10, shuffle-on-return off", 1.3, true, "≤ 1.3×", times,
			ratio(fmt.Sprintf(coreLive, 1000000, false), fmt.Sprintf(coreLive, 10, false), 1, false, false)},
		{"Rent+Return with 1,000,000 live entries vs 10, shuffle-on-return on", 1.3, true, "≤ 1.3×", times,
			ratio(fmt.Sprintf(coreLive, 1000000, true), fmt.Sprintf(coreLive, 10, true), 1, false, false)},
		{"Shuffle of 64 KiB entries (1 GiB in all): throughput", 5000, false, "≥ 5 GB/s", gbps,
			one(coreShufBig, "MB/s", fromCore)},
		{"Shuffle of 1,000,000 32-byte entries: time per entry", 30, true, "≤ 30 ns/entry", nsEntry,
			one(coreShuf32, "ns/entry", fromCore)},
		{"Alloc of 32 B: time", 100, true, "≤ 100 ns", ns,
			one(coreAlloc32, "ns/op", fromCore)},
		{"Alloc of 32 B: allocations", 0, true, "0 allocs/op", count,
			one(coreAlloc32, "allocs/op", fromCore)},
		{"1,000,000 live 32-byte secrets: RSS over their size", 2, true, "≤ 2×", times,
			one(coreMemory, "rss/secret-bytes", fromCore)},
		{"Two goroutines on their own entries vs one: throughput (RentReturn/size=32 ÷ RentReturnParallel/entries=own per op)", 1.6, false, "≥ 1.6×", times,
			ratio(coreRR+"32", coreParOwn, 1, false, false)},

		// Performance round 2 (#14). Item 7 asks that every row above hold
		// or improve, and raises the parallel one.
		// The #14.1 quotients come from blocks of each timed moments
		// apart (BenchmarkRentReturnPaired), not from separate benchmarks,
		// whose medians the machine's drifting speed pulls apart.
		{"#14.1 Rent+Return of 32 B vs AES-256-GCM Open+Seal of 32 B (AEAD built once, in place; paired blocks)", 0.25, true, "≤ 0.25×", times,
			one(corePaired32, "x-gcm", fromCore)},
		{"#14.1 Rent+Return of 32 B vs two internal/aesctr passes of 32 B (default signal guard; paired blocks)", 2.3, true, "≤ 2.3×", times,
			one(corePaired32, "x-aesctr", fromCore)},
		// Like #14.1's, the #14.2 quotient comes from passes timed
		// moments apart (BenchmarkShufflePaired).
		{"#14.2 Shuffle of 1,000,000 32-byte entries vs the bare permute-copy loop (fresh permutation each time; paired passes): time per entry", 2, true, "≤ 2×", times,
			one(coreShufPair, "x-permute", fromCore)},
		{"#14.3 Shuffle of 256 MiB in 64 KiB entries vs copy+clear of the same bytes between two heap buffers: throughput", 0.5, false, "≥ 0.5×", times,
			ratio(coreCC256, coreShuf256, 1, false, false)},
		{"#14.4 Token cache (`memshuffle cache`: 100,000 tokens, 8 goroutines, 90% View lookups) vs the same work on a map behind a sync.RWMutex: throughput", 0.5, false, "≥ 0.5×", times,
			quotient(side{cacheShuffler, "ops/s", fromCache}, side{cacheMap, "ops/s", fromCache}, 1)},
		{"#14.5 Rent+Return of 32 B while the background shuffler moves 256 MiB: 99th percentile (median of the runs)", 2000, true, "≤ 2 µs", ns,
			one(coreBGPause, "p99-ns", fromCore)},
		{"#14.5 Rent+Return of 32 B while the background shuffler moves 256 MiB: longest, in the worst of the runs", 1e6, true, "≤ 1 ms", ns,
			worst(coreBGPause, "max-ns", fromCore)},
		{"#14.5 Rent+Return of 32 B while WithKeyRotation rotates 256 MiB: 99th percentile (median of the runs; of each run's first 2²⁰ operations)", 2000, true, "≤ 2 µs", ns,
			one(coreRotPause, "p99-ns", fromCore)},
		{"#14.5 Rent+Return of 32 B while WithKeyRotation rotates 256 MiB: longest, in the worst of the runs (of each run's first 2²⁰ operations)", 1e6, true, "≤ 1 ms", ns,
			worst(coreRotPause, "max-ns", fromCore)},
		{"#14.6 1,000,000 live 32-byte secrets: RSS over their size", 1.5, true, "≤ 1.5×", times,
			one(coreMemory, "rss/secret-bytes", fromCore)},
		// Like #14.1's, the #14.7 quotient comes from blocks timed
		// moments apart (BenchmarkRentReturnParallelPaired).
		{"#14.7 Two goroutines on their own entries vs one: throughput (paired blocks)", 1.8, false, "≥ 1.8×", times,
			one(coreParPaired, "x-one", fromCore)},
	}
}

// Targets checks the targets against a run.
func Targets(r Runs) []Target {
	var ts []Target
	for _, sp := range targetSpecs() {
		e, from, err := sp.value(r)
		t := Target{What: sp.what, Goal: sp.goal, From: from, Value: e.v, Lo: e.lo, Hi: e.hi, format: sp.format}
		switch {
		case err != nil:
			t.Status = Missing
			t.Measured = "– (" + err.Error() + ")"
		case sp.atMost && e.v <= sp.limit, !sp.atMost && e.v >= sp.limit:
			t.Status = Pass
			t.Measured = sp.format(e.v)
		default:
			t.Status = Fail
			t.Measured = sp.format(e.v)
		}
		// Uncertain: the interval holds values on both sides of the goal.
		if err == nil && !isInf(e.lo) && !isInf(e.hi) {
			if sp.atMost {
				t.Uncertain = e.lo <= sp.limit && sp.limit < e.hi
			} else {
				t.Uncertain = e.lo < sp.limit && sp.limit <= e.hi
			}
		}
		ts = append(ts, t)
	}
	return ts
}

// FormatTime writes a duration in seconds with three significant digits
// in the unit that suits it.
func FormatTime(sec float64) string {
	switch {
	case sec < 1e-6:
		return sig3(sec*1e9) + " ns"
	case sec < 1e-3:
		return sig3(sec*1e6) + " µs"
	case sec < 1:
		return sig3(sec*1e3) + " ms"
	}
	return sig3(sec) + " s"
}

// FormatRatio writes a ratio with three significant digits and a ×.
func FormatRatio(r float64) string { return sig3(r) + "×" }

// FormatBytes writes a byte count in binary units.
func FormatBytes(b float64) string {
	neg := ""
	if b < 0 {
		neg, b = "-", -b
	}
	switch {
	case b < 1<<10:
		return fmt.Sprintf("%s%.0f B", neg, b)
	case b < 1<<20:
		return neg + sig3(b/(1<<10)) + " KiB"
	case b < 1<<30:
		return neg + sig3(b/(1<<20)) + " MiB"
	}
	return neg + sig3(b/(1<<30)) + " GiB"
}

// sig3 formats v with three significant digits, without exponent and
// without trailing zeros after the point.
func sig3(v float64) string {
	var s string
	switch a := abs(v); {
	case a >= 100:
		s = fmt.Sprintf("%.0f", v)
	case a >= 10:
		s = fmt.Sprintf("%.1f", v)
	case a >= 1:
		s = fmt.Sprintf("%.2f", v)
	default:
		s = fmt.Sprintf("%.3g", v)
	}
	if strings.Contains(s, ".") && !strings.ContainsAny(s, "e") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}
