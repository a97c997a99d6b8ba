// Package report turns the output of a benchmark run (go test -bench
// output, cmd/footprint's JSON, the environment run.sh records) into
// BENCHMARKS.md and the Rent+Return chart. Every figure it writes is
// computed from those files; none is typed in.
package report

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"golang.org/x/perf/benchfmt"
	"golang.org/x/perf/benchmath"
)

// Set is the parsed output of one or more runs of one test binary: every
// sample of every benchmark, by name and unit.
type Set struct {
	Names  []string // benchmark names, GOMAXPROCS suffix removed, in order of first appearance
	Config map[string]string
	bench  map[string]*Bench
}

// Bench is every sample of one benchmark.
type Bench struct {
	Name  string            // full name without the GOMAXPROCS suffix
	Procs int               // GOMAXPROCS from the "-N" suffix; 1 when there is none
	Keys  map[string]string // sub-benchmark key=value parts ("lib", "size")
	Units []string          // units as written in the output, in order of first appearance
	// Samples are the values by unit as written in the output ("ns/op",
	// "MB/s", "allocs/op", "ns/entry").
	Samples map[string][]float64
}

// Parse reads Go benchmark output. Lines that are not benchmark results
// (PASS, ok, log output) are skipped; a malformed result line is an error.
func Parse(r io.Reader, fileName string) (*Set, error) {
	s := &Set{Config: map[string]string{}, bench: map[string]*Bench{}}
	br := benchfmt.NewReader(r, fileName)
	for br.Scan() {
		switch rec := br.Result().(type) {
		case *benchfmt.SyntaxError:
			return nil, rec
		case *benchfmt.Result:
			s.add(rec)
		}
	}
	if err := br.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

// ParseFile reads Go benchmark output from a file.
func ParseFile(path string) (*Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f, path)
}

func (s *Set) add(res *benchfmt.Result) {
	for _, c := range res.Config {
		if c.File {
			s.Config[c.Key] = string(c.Value)
		}
	}
	// benchfmt drops the "Benchmark" prefix; names here are as go test
	// prints them.
	base, parts := res.Name.Parts()
	name := "Benchmark" + string(base)
	procs := 1
	keys := map[string]string{}
	for _, p := range parts {
		switch {
		case p[0] == '-':
			procs, _ = strconv.Atoi(string(p[1:]))
		default:
			name += string(p)
			if k, v, ok := bytes.Cut(p[1:], []byte("=")); ok {
				keys[string(k)] = string(v)
			}
		}
	}
	b := s.bench[name]
	if b == nil {
		b = &Bench{Name: name, Procs: procs, Keys: keys, Samples: map[string][]float64{}}
		s.bench[name] = b
		s.Names = append(s.Names, name)
	}
	for _, v := range res.Values {
		unit, val := v.Unit, v.Value
		if v.OrigUnit != "" {
			unit, val = v.OrigUnit, v.OrigValue
		}
		if _, seen := b.Samples[unit]; !seen {
			b.Units = append(b.Units, unit)
		}
		b.Samples[unit] = append(b.Samples[unit], val)
	}
}

// Bench returns the named benchmark (without GOMAXPROCS suffix), or nil.
func (s *Set) Bench(name string) *Bench {
	if s == nil {
		return nil
	}
	return s.bench[name]
}

// Summary is the median of a benchmark's samples in one unit, with its
// 95% confidence interval (infinite when there are too few samples).
type Summary struct {
	Median, Lo, Hi float64
	N              int
}

// CIPercent is the half-width of the confidence interval as a percentage
// of the median, and whether it is finite.
func (m Summary) CIPercent() (float64, bool) {
	if m.N < 2 || m.Median == 0 || isInf(m.Lo) || isInf(m.Hi) {
		return 0, false
	}
	return 100 * max(m.Hi/m.Median-1, 1-m.Lo/m.Median), true
}

func isInf(f float64) bool { return math.IsInf(f, 0) }

// Summary summarizes the named benchmark's samples in unit, as benchstat
// does: median and a distribution-free confidence interval.
func (s *Set) Summary(name, unit string) (Summary, error) {
	b := s.Bench(name)
	if b == nil {
		return Summary{}, fmt.Errorf("%s is missing from the run", name)
	}
	return b.Summary(unit)
}

// Summary summarizes the benchmark's samples in unit.
func (b *Bench) Summary(unit string) (Summary, error) {
	xs := b.Samples[unit]
	if len(xs) == 0 {
		return Summary{}, fmt.Errorf("%s has no %s figures", b.Name, unit)
	}
	sample := benchmath.NewSample(append([]float64(nil), xs...), &benchmath.DefaultThresholds)
	sum := benchmath.AssumeNothing.Summary(sample, 0.95)
	return Summary{Median: sum.Center, Lo: sum.Lo, Hi: sum.Hi, N: len(xs)}, nil
}

// Median is the median of the named benchmark's samples in unit.
func (s *Set) Median(name, unit string) (float64, error) {
	m, err := s.Summary(name, unit)
	return m.Median, err
}

// Values returns the distinct values of a sub-benchmark key over the
// benchmarks whose name starts with prefix, in order of first appearance.
func (s *Set) Values(prefix, key string) []string {
	if s == nil {
		return nil
	}
	var vs []string
	seen := map[string]bool{}
	for _, n := range s.Names {
		if !strings.HasPrefix(n, prefix) {
			continue
		}
		if v, ok := s.bench[n].Keys[key]; ok && !seen[v] {
			seen[v] = true
			vs = append(vs, v)
		}
	}
	return vs
}

// ReadEnv reads the "key: value" lines run.sh records about the machine
// and the run, in order.
func ReadEnv(path string) ([][2]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var kv [][2]string
	for line := range strings.Lines(string(raw)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok {
			kv = append(kv, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
		}
	}
	return kv, nil
}

// CacheName is the name under which ParseCache files the token cache
// workload's runs, as if it were a benchmark with a sub-benchmark per
// store: CacheName+"store=memshuffle" and CacheName+"store=map-rwmutex".
const CacheName = "BenchmarkCache/"

// ParseCache reads the output of `memshuffle cache` runs (with and without
// -baseline, any number of each, in any order) and makes a Set of their
// summary lines, one sample per run, in ops/s as printed. Other lines are skipped; a summary line that does not parse is an error.
func ParseCache(r io.Reader) (*Set, error) {
	s := &Set{Config: map[string]string{}, bench: map[string]*Bench{}}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "summary: ")
		if !ok {
			continue
		}
		store, rest, ok := strings.Cut(rest, ": ")
		f := strings.Fields(rest)
		if !ok || len(f) < 2 || f[1] != "ops/s" {
			return nil, fmt.Errorf("cache summary line %q: want \"summary: <store>: <n> ops/s ...\"", line)
		}
		ops, err := strconv.ParseFloat(f[0], 64)
		if err != nil || ops <= 0 {
			return nil, fmt.Errorf("cache summary line %q: bad ops/s %q", line, f[0])
		}
		var key string
		switch store {
		case "memshuffle":
			key = "memshuffle"
		case "map+RWMutex":
			key = "map-rwmutex"
		default:
			return nil, fmt.Errorf("cache summary line %q: unknown store %q", line, store)
		}
		name := CacheName + "store=" + key
		b := s.bench[name]
		if b == nil {
			b = &Bench{Name: name, Procs: 1, Keys: map[string]string{"store": key}, Units: []string{"ops/s"}, Samples: map[string][]float64{}}
			s.bench[name] = b
			s.Names = append(s.Names, name)
		}
		b.Samples["ops/s"] = append(b.Samples["ops/s"], ops)
	}
	return s, sc.Err()
}

// ParseCacheFile reads the output of `memshuffle cache` runs from a file.
func ParseCacheFile(path string) (*Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseCache(f)
}
