package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRun writes a report and a chart from the samples in testdata, which
// are laid out as a results directory is.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "BENCHMARKS.md")
	svg := filepath.Join(dir, "bench", "rentreturn.svg")
	if err := os.Mkdir(filepath.Dir(svg), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := run("../../testdata", out, svg, "../../testdata/NOTES.md"); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"](bench/rentreturn.svg)", "Sample notes:", "## Targets", "## Memory footprint"} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if fi, err := os.Stat(svg); err != nil || fi.Size() == 0 {
		t.Errorf("chart: %v", err)
	}

	// A missing notes file leaves the placeholder, not an error.
	if err := run("../../testdata", out, svg, filepath.Join(dir, "NOTES.md")); err != nil {
		t.Fatal(err)
	}
	if doc, _ := os.ReadFile(out); !strings.Contains(string(doc), "(None yet.") {
		t.Error("report without a notes file lacks the placeholder")
	}
}
