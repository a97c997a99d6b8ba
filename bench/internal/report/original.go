package report

import "fmt"

// The original library's figures cannot come from a run of bench/run.sh
// (it is Zig, with no Go binding), so they are quoted: measured earlier by
// building it (Zig 0.14-dev, ReleaseFast, page_allocator) and running its
// workloads interleaved with memshuffle's, 5 rounds, medians, on a 2-core
// virtual CPU that reported itself as "Oxide Virtual Turin-like". They are
// the only figures of the report that are typed in, and the report says so
// next to them.
const originalSetup = `Zig 0.14-dev, ReleaseFast, page_allocator; 2-core "Oxide Virtual Turin-like" virtual CPU; 5 interleaved rounds, medians`

// originalRow is one workload of the original library's own benchmarks.
type originalRow struct {
	workload string
	original string // quoted, see originalSetup
	ours     side   // our figure, in the unit shown
	base     side   // the baseline of this run, in the unit shown
	scale    float64
	baseWhat string
	// ratioUnit is the unit in which ours ÷ base is a cost ratio (a time),
	// whatever unit the figures are shown in.
	ratioUnit string
}

func originalRows() []originalRow {
	return []originalRow{
		{"Rent+Return of 32 B", "37.0 ns",
			side{coreRR + "32", "ns/op", fromCore}, side{coreGCM32, "ns/op", fromCore}, 1,
			"AES-256-GCM Open+Seal of 32 B", "ns/op"},
		{"Rent+Return of 64 KiB", "25.2 µs",
			side{coreRR + "65536", "ns/op", fromCore}, side{coreCTR + "65536", "ns/op", fromCore}, 2,
			"two AES-256-CTR passes (crypto/cipher)", "ns/op"},
		{"Rent+Return of 1 MiB", "407 µs",
			side{coreRR + "1048576", "ns/op", fromCore}, side{coreCTR + "1048576", "ns/op", fromCore}, 2,
			"two AES-256-CTR passes (crypto/cipher)", "ns/op"},
		{"Shuffle of 1,000 × 64 KiB", "0.32 GB/s",
			side{coreShuf1k, "MB/s", fromCore}, side{coreCC1k, "MB/s", fromCore}, 1,
			"copy+clear of the same bytes between two heap buffers", "ns/op"},
		{"Shuffle of 100,000 × 32 B", "262 ns/entry",
			side{coreShuf100k, "ns/entry", fromCore}, side{corePerm100k, "ns/entry", fromCore}, 1,
			"permute-copy loop, permutation drawn", "ns/entry"},
		{"Rent+Return of 32 B, shuffle-on-return, 1,000 live", "505 µs",
			side{fmt.Sprintf(coreLive, 1000, true), "ns/op", fromCore}, side{coreGCM32, "ns/op", fromCore}, 1,
			"AES-256-GCM Open+Seal of 32 B", "ns/op"},
	}
}

// formatIn writes a median in the unit it was read in.
func formatIn(unit string, v float64) string {
	switch unit {
	case "ns/op":
		return FormatTime(v * 1e-9)
	case "MB/s":
		return formatMBps(v)
	case "ns/entry":
		return sig3(v) + " ns/entry"
	}
	return sig3(v) + " " + unit
}

func writeOriginal(p printer, in Input) {
	p("## Against the original\n\n")
	cpu := in.Core.config("cpu")
	for _, kv := range in.Env {
		if kv[0] == "cpu" {
			cpu = kv[1]
		}
	}
	if cpu == "" {
		cpu = "not recorded"
	}
	p("The workloads of the original Zig library's own benchmarks. **The original's column is quoted, not\n")
	p("measured in this run**: it comes from an earlier measurement (%s),\n", originalSetup)
	p("typed in here, the only figures of the generated tables that are. This run's CPU: %s. Absolute speed on a shared\n", cpu)
	p("virtual machine varies by 2× and more between moments, so hold the quoted figures against ours only\n")
	p("roughly. Our figures, the baselines and the last column are from this run; the last column, our cost over\n")
	p("a floor measured in the same rounds, is the fair comparison. The original reaches its figures without\n")
	p("fresh counters (its keystream repeats), without wiping what it moves or frees, and with an arena that\n")
	p("never shrinks.\n\n")
	p("| workload | original (Zig), quoted | memshuffle, this run | baseline, this run | memshuffle ÷ baseline (time) | from |\n")
	p("| --- | ---: | ---: | --- | ---: | --- |\n")
	runs := Runs{Core: in.Core, Cmp: in.Cmp, Cache: in.Cache}
	for _, r := range originalRows() {
		ours, base, ratio := "–", "–", "–"
		if m, err := runs.set(r.ours.src).Summary(r.ours.name, r.ours.unit); err == nil {
			ours = formatIn(r.ours.unit, m.Median)
		}
		if m, err := runs.set(r.base.src).Summary(r.base.name, r.base.unit); err == nil {
			v := m.Median
			if r.base.unit != "MB/s" {
				v *= r.scale
			}
			base = formatIn(r.base.unit, v) + ": " + r.baseWhat
		} else {
			base = "– (" + r.baseWhat + ")"
		}
		q := quotient(side{r.ours.name, r.ratioUnit, r.ours.src}, side{r.base.name, r.ratioUnit, r.base.src}, r.scale)
		if e, _, err := q(runs); err == nil {
			ratio = FormatRatio(e.v)
			if !isInf(e.lo) && !isInf(e.hi) {
				ratio += " (" + FormatRatio(e.lo) + " – " + FormatRatio(e.hi) + ")"
			}
		}
		p("| %s | %s | %s | %s | %s | %s |\n", r.workload, r.original, ours, base, ratio, code([]string{r.ours.name, r.base.name}))
	}
	p("\nThe last column's interval, where there is one, is the 95%% interval of the ratio as in the targets table.\n\n")
}
