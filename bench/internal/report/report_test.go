package report

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/memshuffle/memshuffle/bench/internal/footprint"
)

// The samples under testdata are in the format of real runs, with figures
// chosen so that each target's outcome is known: see TestTargets.
const testdata = "../../testdata"

func parse(t *testing.T, name string) *Set {
	t.Helper()
	s, err := ParseFile(filepath.Join(testdata, name))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParse(t *testing.T) {
	core := parse(t, "core.txt")
	if got, want := core.Config["cpu"], "Sample CPU @ 2.00GHz"; got != want {
		t.Errorf("cpu = %q, want %q", got, want)
	}
	b := core.Bench("BenchmarkRentReturn/size=32")
	if b == nil {
		t.Fatalf("BenchmarkRentReturn/size=32 missing; have %q", core.Names)
	}
	if b.Procs != 2 || b.Keys["size"] != "32" || len(b.Samples["ns/op"]) != 3 {
		t.Errorf("RentReturn/size=32: procs %d, keys %v, %d ns/op samples", b.Procs, b.Keys, len(b.Samples["ns/op"]))
	}
	if got := core.Bench("BenchmarkShuffle/entries=1000000/size=32").Samples["ns/entry"]; len(got) != 1 || got[0] != 25 {
		t.Errorf("custom metric ns/entry = %v, want [25]", got)
	}
	if got := core.Bench("BenchmarkRentReturnParallel/entries=shared").Samples["busy/op"]; len(got) != 1 || got[0] != 0.8 {
		t.Errorf("custom metric busy/op = %v, want [0.8]", got)
	}
	if core.Bench("BenchmarkMemory") != nil {
		t.Error("a failed benchmark has results")
	}
	if got, want := len(core.Names), 31; got != want {
		t.Errorf("%d benchmarks, want %d: %q", got, want, core.Names)
	}

	cmp := parse(t, "compare.txt")
	if got, want := strings.Join(cmp.Values(CompareName, "lib"), ","), "memshuffle,memguard-enclave,heap,aes-ctr-x2"; got != want {
		t.Errorf("libs = %s, want %s", got, want)
	}
	if got, want := strings.Join(cmp.Values(CompareName+"lib=heap/", "size"), ","), "32,65536"; got != want {
		t.Errorf("sizes = %s, want %s", got, want)
	}
	m, err := cmp.Summary("BenchmarkRentReturn/lib=memguard-enclave/size=32", "ns/op")
	if err != nil || m.Median != 55000 || m.N != 3 {
		t.Errorf("summary = %+v, %v; want median 55000 of 3", m, err)
	}
	if _, ok := m.CIPercent(); ok {
		t.Error("3 samples gave a finite 95% confidence interval")
	}
	if _, err := cmp.Summary("BenchmarkNone", "ns/op"); err == nil {
		t.Error("summary of a missing benchmark: no error")
	}
}

func parseCache(t *testing.T) *Set {
	t.Helper()
	s, err := ParseCacheFile(filepath.Join(testdata, "cache.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseCache(t *testing.T) {
	s := parseCache(t)
	ms, err := s.Summary(CacheName+"store=memshuffle", "ops/s")
	if err != nil || ms.N != 2 || ms.Median != 1.6e6 {
		t.Errorf("memshuffle: %+v, %v; want the median 1.6e6 of 2 runs", ms, err)
	}
	mp, err := s.Summary(CacheName+"store=map-rwmutex", "ops/s")
	if err != nil || mp.N != 2 || mp.Median != 3.5e6 {
		t.Errorf("map: %+v, %v; want the median 3.5e6 of 2 runs", mp, err)
	}
	for _, bad := range []string{
		"summary: memshuffle: many ops/s over 3s\n",
		"summary: memshuffle: 100 ops over 3s\n",
		"summary: redis: 100 ops/s over 3s\n",
	} {
		if _, err := ParseCache(strings.NewReader(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if s, err := ParseCache(strings.NewReader("cache: memshuffle, ...\n")); err != nil || len(s.Names) != 0 {
		t.Errorf("output without a summary: %v, %v", s.Names, err)
	}
}

func TestParseRejectsMalformed(t *testing.T) {
	_, err := Parse(strings.NewReader("BenchmarkX-2 \t 100 \t twelve ns/op\n"), "bad.txt")
	if err == nil {
		t.Fatal("a malformed result line parsed")
	}
}

func TestSummaryCI(t *testing.T) {
	var out strings.Builder
	for _, v := range []string{"98", "99", "100", "100", "101", "102", "100", "99", "101", "100"} {
		out.WriteString("BenchmarkX-2 \t 100 \t " + v + " ns/op\n")
	}
	s, err := Parse(strings.NewReader(out.String()), "ten.txt")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Summary("BenchmarkX", "ns/op")
	if err != nil {
		t.Fatal(err)
	}
	pct, ok := m.CIPercent()
	if m.Median != 100 || !ok || pct <= 0 || pct > 2 {
		t.Errorf("summary %+v, CI ±%.2f%% (%v); want median 100 and a CI within ±2%%", m, pct, ok)
	}
}

func TestTargets(t *testing.T) {
	want := []struct {
		status   Status
		measured string
	}{
		{Pass, "100 ns"},    // RentReturn 32 B: median of 90, 100, 130
		{Pass, "0"},         // its allocations
		{Pass, "733×"},      // memguard 55000 ns ÷ memshuffle 75 ns
		{Pass, "1×"},        // 64 KiB: median of the paired x-ctr 0.9, 1.0, 1.1
		{Fail, "1.5×"},      // 1 MiB: median of the paired x-ctr 1.4, 1.5, 1.6
		{Pass, "1.2×"},      // live, off: 120 ÷ 100
		{Fail, "2×"},        // live, on: 400 ÷ 200
		{Fail, "4.29 GB/s"}, // shuffle of 64 KiB entries
		{Pass, "25.0 ns/entry"},
		{Pass, "80 ns"},  // Alloc
		{Fail, "1"},      // its allocations
		{Missing, ""},    // BenchmarkMemory failed
		{Pass, "1.82×"},  // parallel: 100 ÷ 55
		{Pass, "0.2×"},   // #14.1: median of the paired x-gcm 0.18, 0.2, 0.3
		{Fail, "5×"},     // #14.1: median of the paired x-aesctr 4, 5, 6
		{Pass, "1.25×"},  // #14.2: median of the paired x-permute 1.2, 1.25, 1.4
		{Fail, "0.4×"},   // #14.3: copy+clear 40 ms ÷ shuffle 100 ms
		{Fail, "0.457×"}, // #14.4: 1.6M ops/s ÷ 3.5M ops/s (medians of two runs each)
		{Pass, "400 ns"}, // #14.5: median p99 of 300, 500, 400
		{Fail, "2 ms"},   // #14.5: the largest max-ns, not the median
		{Missing, ""},    // #14.5 during rotation: not in the sample
		{Missing, ""},
		{Missing, ""},   // #14.6: BenchmarkMemory failed
		{Pass, "1.85×"}, // #14.7: median of the paired x-one 1.7, 1.85, 1.9
	}
	ts := Targets(Runs{Core: parse(t, "core.txt"), Cmp: parse(t, "compare.txt"), Cache: parseCache(t)})
	if len(ts) != len(want) {
		t.Fatalf("%d targets, want %d", len(ts), len(want))
	}
	for i, tg := range ts {
		if tg.Status != want[i].status || (want[i].measured != "" && tg.Measured != want[i].measured) {
			t.Errorf("%s: %v, %q; want %v, %q", tg.What, tg.Status, tg.Measured, want[i].status, want[i].measured)
		}
	}
	if !strings.Contains(ts[11].Measured, "BenchmarkMemory is missing") || !strings.Contains(ts[22].Measured, "BenchmarkMemory is missing") {
		t.Errorf("missing target says %q", ts[11].Measured)
	}
}

func TestRender(t *testing.T) {
	fp, err := footprint.Read(filepath.Join(testdata, "footprint.json"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := ReadEnv(filepath.Join(testdata, "env.txt"))
	if err != nil {
		t.Fatal(err)
	}
	notes, err := os.ReadFile(filepath.Join(testdata, "NOTES.md"))
	if err != nil {
		t.Fatal(err)
	}
	in := Input{
		Core:      parse(t, "core.txt"),
		Cmp:       parse(t, "compare.txt"),
		Cache:     parseCache(t),
		CoreStat:  "core benchstat text",
		CmpStat:   "compare benchstat text",
		Footprint: fp,
		Env:       env,
		Commands:  "go test -run '^$' -bench . -count 3\n",
		Notes:     string(notes),
		NotesPath: "bench/NOTES.md",
		ChartLink: "bench/rentreturn.svg",
	}
	var out bytes.Buffer
	if err := Render(&out, in); err != nil {
		t.Fatal(err)
	}
	doc := out.String()
	for _, want := range []string{
		"- **cpu**: Sample CPU @ 2.00GHz",
		"12 of 24 targets hold in this run (0 of the verdicts uncertain)",
		"| #14.5 Rent+Return of 32 B while the background shuffler moves 256 MiB: longest, in the worst of the runs | ≤ 1 ms | 2 ms | – | **no** |",
		"memshuffle 1.6M ops/s, the map behind a sync.RWMutex 3.5M ops/s\n(medians of 2 and 2 runs)",
		"(`RentReturnDuringKeyRotation/total=256MiB/size=32/shards=8/rotation=off`): 99th percentile 300 ns (median of 2 runs), longest 9 ms in the worst\nof them (of each run's first 2²⁰ operations)",
		"timed in the same iterations: 1.93× (median of 2 runs; 1.9× – 1.96× per run)",
		"The two goroutines' entries\nhad shards in common in some runs (at most 1, `shared-shards`)",
		"## Against the original",
		"This run's CPU: Sample CPU @ 2.00GHz.",
		"| Rent+Return of 32 B | 37.0 ns | 100 ns | 500 ns: AES-256-GCM Open+Seal of 32 B | 0.2× | `RentReturn/size=32`, `BaselineGCM/size=32` |",
		"| Rent+Return of 64 KiB | 25.2 µs | 20 µs | 20 µs: two AES-256-CTR passes (crypto/cipher) | 1× |",
		"| Shuffle of 1,000 × 64 KiB | 0.32 GB/s | 3.28 GB/s | 6.55 GB/s: copy+clear of the same bytes between two heap buffers | 2× |",
		"| Shuffle of 100,000 × 32 B | 262 ns/entry | 30 ns/entry | 15 ns/entry: permute-copy loop, permutation drawn | 2× |",
		"| Rent+Return of 32 B, shuffle-on-return, 1,000 live | 505 µs | 150 ns | 500 ns: AES-256-GCM Open+Seal of 32 B | 0.3× |",
		"| Rent+Return of 1 MiB vs two AES-256-CTR passes (2 × BenchmarkBaselineCTR; paired blocks) | ≤ 1.25× | 1.5× | – | **no** |",
		"## Notes\n\n<!-- notes: begin (copied from bench/NOTES.md",
		"Sample notes: Rent+Return of 32 B misses its target because of the sample.\n\n<!-- notes: end -->",
		"![Rent+Return time against entry size, log-log, one line per library](bench/rentreturn.svg)",
		"| 32 B | 75 ns | 55 µs | 5 ns | 500 ns |",
		"| 64 KiB | 10× | 5× | 1.25× |", // memguard-enclave ÷ memshuffle, memshuffle ÷ heap, memshuffle ÷ aes-ctr-x2
		"| memguard-buffer | 1,000,000 | failed after 32,745 secrets: panic: <memcall> could not acquire lock",
		"| memguard-buffer | 2,000,000 | timed out after 1,280+ secrets: no result within 5m0s; killed |",
		"| memshuffle | 1,000,000 | ok | 1,000,000 | 61 MiB | 15.3 MiB | 2× |",
		"go test -run '^$' -bench . -count 3",
		"compare benchstat text",
		"| Shuffle/entries=1000000/size=32 | 25 ms | – | 1.28 GB/s | 16 B | 0 | 25 ns/entry | 1 |",
		"| RentReturnParallel/entries=shared | 150 ns | – | 213 MB/s | 0 B | 0 | 0.8 busy/op | 1 |",
		"run with GOMAXPROCS 2",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", doc)
	}

	// Without notes the section is still there, with the placeholder.
	in.Notes = ""
	out.Reset()
	if err := Render(&out, in); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "## Notes\n\n<!-- notes: begin") || !strings.Contains(out.String(), "(None yet.") {
		t.Error("report without notes lacks the Notes placeholder")
	}
}

func TestChart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chart.svg")
	if err := Chart(parse(t, "compare.txt"), path); err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "memshuffle", "memguard-enclave", "aes-ctr-x2"} {
		if !bytes.Contains(svg, []byte(want)) {
			t.Errorf("chart lacks %q", want)
		}
	}
	if err := Chart(&Set{}, path); err == nil {
		t.Error("chart of no data: no error")
	}
}

func TestFormat(t *testing.T) {
	tests := []struct{ got, want string }{
		{FormatTime(68.72e-9), "68.7 ns"},
		{FormatTime(100e-9), "100 ns"},
		{FormatTime(57273e-9), "57.3 µs"},
		{FormatTime(2.5117e-3), "2.51 ms"},
		{FormatTime(3.2), "3.2 s"},
		{FormatRatio(833.4), "833×"},
		{FormatRatio(1.0), "1×"},
		{FormatRatio(0.0345), "0.0345×"},
		{FormatBytes(512), "512 B"},
		{FormatBytes(90193920), "86 MiB"},
		{thousands(1000000), "1,000,000"},
		{thousands(999), "999"},
		{sizeLabel("1048576"), "1 MiB"},
		{sizeLabel("1019"), "1019 B"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestTargetUncertain(t *testing.T) {
	var out strings.Builder
	for i, v := range []string{"80", "85", "90", "95", "98", "99", "105", "110", "120", "130"} {
		out.WriteString("BenchmarkRentReturn/size=32-2 \t 1000 \t " + v + " ns/op \t 0 allocs/op\n")
		out.WriteString("BenchmarkAlloc/size=32-2 \t 1000 \t " + []string{"49", "50", "51", "50", "50", "49", "51", "50", "50", "50"}[i] + " ns/op\n")
	}
	core, err := Parse(strings.NewReader(out.String()), "spread.txt")
	if err != nil {
		t.Fatal(err)
	}
	ts := Targets(Runs{Core: core, Cmp: &Set{}})
	rr, alloc := ts[0], ts[9]
	if rr.Status != Pass || !rr.Uncertain || rr.CI() == "–" {
		t.Errorf("RentReturn 32 B: %v, uncertain %v, CI %s; want a pass whose interval contains 100 ns", rr.Status, rr.Uncertain, rr.CI())
	}
	if alloc.Status != Pass || alloc.Uncertain || alloc.CI() != "49 ns – 51 ns" {
		t.Errorf("Alloc 32 B: %v, uncertain %v, CI %s; want a certain pass within 49–51 ns", alloc.Status, alloc.Uncertain, alloc.CI())
	}
	if z := ts[1]; z.Status != Pass || z.Uncertain {
		t.Errorf("0 allocs/op in every sample: %v, uncertain %v; want a certain pass", z.Status, z.Uncertain)
	}
	if m := ts[2]; m.Status != Missing || m.CI() != "–" {
		t.Errorf("memguard ratio without comparison data: %v, CI %s", m.Status, m.CI())
	}
}

func TestRenderDurationMetrics(t *testing.T) {
	core, err := Parse(strings.NewReader("BenchmarkPause/total=1GiB-2 \t 1000 \t 242 ns/op \t 268 p99-ns \t 839450334 full-shuffle-ns \t 0.5 busy/op\n"), "pause.txt")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Render(&out, Input{Core: core, Cmp: &Set{}}); err != nil {
		t.Fatal(err)
	}
	if want := "| Pause/total=1GiB | 242 ns | – | – | – | – | p99 268 ns, full-shuffle 839 ms, 0.5 busy/op | 1 |"; !strings.Contains(out.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, out.String())
	}
}
