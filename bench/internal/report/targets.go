package report

import (
	"fmt"
	"math"
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

// A target spec computes one value from the core module's and the
// comparison module's results and holds it against a limit.
type targetSpec struct {
	what   string
	limit  float64
	atMost bool // the value must be ≤ limit; otherwise ≥ limit
	goal   string
	format func(float64) string
	value  func(core, cmp *Set) (estimate, []string, error)
}

// estimate is a median, or a ratio of medians, with its bounds.
type estimate struct{ v, lo, hi float64 }

const (
	coreRR      = "BenchmarkRentReturn/size="
	coreCTR     = "BenchmarkBaselineCTR/size="
	coreLive    = "BenchmarkRentReturnLive/live=%d/onreturn=%v"
	coreAlloc32 = "BenchmarkAlloc/size=32"
	coreShufBig = "BenchmarkShuffle/total=1GiB/size=65536"
	coreShuf32  = "BenchmarkShuffle/entries=1000000/size=32"
	coreMemory  = "BenchmarkMemory"
	coreParOwn  = "BenchmarkRentReturnParallel/entries=own"
	cmpRR       = "BenchmarkRentReturn/lib=%s/size=%d"
)

// one is a value read straight from one benchmark.
func one(name, unit string, fromCmp bool) func(core, cmp *Set) (estimate, []string, error) {
	return func(core, cmp *Set) (estimate, []string, error) {
		s := core
		if fromCmp {
			s = cmp
		}
		m, err := s.Summary(name, unit)
		return estimate{m.Median, m.Lo, m.Hi}, []string{name}, err
	}
}

// ratio is num's median over den's median (times denScale), both in ns/op.
// Its bounds are the smallest and largest quotients the two confidence
// intervals allow.
func ratio(num, den string, denScale float64, numCmp, denCmp bool) func(core, cmp *Set) (estimate, []string, error) {
	return func(core, cmp *Set) (estimate, []string, error) {
		pick := func(c bool) *Set {
			if c {
				return cmp
			}
			return core
		}
		from := []string{num, den}
		n, err := pick(numCmp).Summary(num, "ns/op")
		if err != nil {
			return estimate{}, from, err
		}
		d, err := pick(denCmp).Summary(den, "ns/op")
		if err != nil {
			return estimate{}, from, err
		}
		if d.Median <= 0 {
			return estimate{}, from, fmt.Errorf("%s is zero", den)
		}
		e := estimate{n.Median / (d.Median * denScale), math.Inf(-1), math.Inf(1)}
		if !isInf(n.Lo) && !isInf(n.Hi) && !isInf(d.Lo) && !isInf(d.Hi) && d.Lo > 0 {
			e.lo, e.hi = n.Lo/(d.Hi*denScale), n.Hi/(d.Lo*denScale)
		}
		return e, from, nil
	}
}

func targetSpecs() []targetSpec {
	ns := func(v float64) string { return FormatTime(v * 1e-9) }
	times := func(v float64) string { return FormatRatio(v) }
	count := func(v float64) string { return fmt.Sprintf("%g", v) }
	gbps := func(v float64) string { return fmt.Sprintf("%.2f GB/s", v/1e3) } // MB/s in, GB/s out
	nsEntry := func(v float64) string { return fmt.Sprintf("%.1f ns/entry", v) }

	return []targetSpec{
		{"Rent+Return of 32 B: time", 100, true, "≤ 100 ns", ns,
			one(coreRR+"32", "ns/op", false)},
		{"Rent+Return of 32 B: allocations", 0, true, "0 allocs/op", count,
			one(coreRR+"32", "allocs/op", false)},
		{"Rent+Return of 32 B vs memguard Enclave Open+Destroy (same binary)", 500, false, "≥ 500× faster", times,
			ratio(fmt.Sprintf(cmpRR, "memguard-enclave", 32), fmt.Sprintf(cmpRR, "memshuffle", 32), 1, true, true)},
		{"Rent+Return of 64 KiB vs two AES-256-CTR passes (2 × BenchmarkBaselineCTR)", 1.25, true, "≤ 1.25×", times,
			ratio(coreRR+"65536", coreCTR+"65536", 2, false, false)},
		{"Rent+Return of 1 MiB vs two AES-256-CTR passes (2 × BenchmarkBaselineCTR)", 1.25, true, "≤ 1.25×", times,
			ratio(coreRR+"1048576", coreCTR+"1048576", 2, false, false)},
		{"Rent+Return with 1,000,000 live entries vs 10, shuffle-on-return off", 1.3, true, "≤ 1.3×", times,
			ratio(fmt.Sprintf(coreLive, 1000000, false), fmt.Sprintf(coreLive, 10, false), 1, false, false)},
		{"Rent+Return with 1,000,000 live entries vs 10, shuffle-on-return on", 1.3, true, "≤ 1.3×", times,
			ratio(fmt.Sprintf(coreLive, 1000000, true), fmt.Sprintf(coreLive, 10, true), 1, false, false)},
		{"Shuffle of 64 KiB entries (1 GiB in all): throughput", 5000, false, "≥ 5 GB/s", gbps,
			one(coreShufBig, "MB/s", false)},
		{"Shuffle of 1,000,000 32-byte entries: time per entry", 30, true, "≤ 30 ns/entry", nsEntry,
			one(coreShuf32, "ns/entry", false)},
		{"Alloc of 32 B: time", 100, true, "≤ 100 ns", ns,
			one(coreAlloc32, "ns/op", false)},
		{"Alloc of 32 B: allocations", 0, true, "0 allocs/op", count,
			one(coreAlloc32, "allocs/op", false)},
		{"1,000,000 live 32-byte secrets: RSS over their size", 2, true, "≤ 2×", times,
			one(coreMemory, "rss/secret-bytes", false)},
		{"Two goroutines on their own entries vs one: throughput (RentReturn/size=32 ÷ RentReturnParallel/entries=own per op)", 1.6, false, "≥ 1.6×", times,
			ratio(coreRR+"32", coreParOwn, 1, false, false)},
	}
}

// Targets checks the targets against a run: core holds the core
// module's benchmarks, cmp the comparison module's.
func Targets(core, cmp *Set) []Target {
	var ts []Target
	for _, sp := range targetSpecs() {
		e, from, err := sp.value(core, cmp)
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
