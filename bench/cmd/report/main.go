// Command report writes BENCHMARKS.md and the Rent+Return chart from the
// files a run of bench/run.sh leaves in its results directory:
//
//	compare.txt, core.txt                      go test -bench output
//	cache.txt                                  output of memshuffle cache runs
//	compare.benchstat.txt, core.benchstat.txt  benchstat's summaries
//	footprint.json                             cmd/footprint's output
//	env.txt                                    "key: value" lines about the machine and the run
//	commands.txt                               the commands the run executed
//	failures.txt                               steps that failed, if any
//
// Only compare.txt and core.txt are required; a missing optional file
// leaves its section saying so. The Notes section is copied from -notes.
//
//	go run ./cmd/report -results results -out ../BENCHMARKS.md -svg rentreturn.svg -notes NOTES.md
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/memshuffle/memshuffle/bench/internal/footprint"
	"github.com/memshuffle/memshuffle/bench/internal/report"
)

func main() {
	results := flag.String("results", "bench/results", "directory with the run's output")
	out := flag.String("out", "BENCHMARKS.md", "the report to write")
	svg := flag.String("svg", "bench/rentreturn.svg", "the chart to write")
	notes := flag.String("notes", "bench/NOTES.md", "file whose contents become the Notes section, if it exists")
	flag.Parse()
	if err := run(*results, *out, *svg, *notes); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(results, out, svg, notesPath string) error {
	in := report.Input{NotesPath: filepath.ToSlash(notesPath)}
	var err error
	if in.Cmp, err = report.ParseFile(filepath.Join(results, "compare.txt")); err != nil {
		return err
	}
	if in.Core, err = report.ParseFile(filepath.Join(results, "core.txt")); err != nil {
		return err
	}
	optional := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(results, name))
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		return string(b), err
	}
	if in.CmpStat, err = optional("compare.benchstat.txt"); err != nil {
		return err
	}
	if in.CoreStat, err = optional("core.benchstat.txt"); err != nil {
		return err
	}
	if in.Cache, err = report.ParseCacheFile(filepath.Join(results, "cache.txt")); errors.Is(err, fs.ErrNotExist) {
		in.Cache = nil
	} else if err != nil {
		return err
	}
	if in.Commands, err = optional("commands.txt"); err != nil {
		return err
	}
	if in.Failures, err = optional("failures.txt"); err != nil {
		return err
	}
	if in.Footprint, err = footprint.Read(filepath.Join(results, "footprint.json")); errors.Is(err, fs.ErrNotExist) {
		in.Footprint = nil
	} else if err != nil {
		return err
	}
	if in.Env, err = report.ReadEnv(filepath.Join(results, "env.txt")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if b, err := os.ReadFile(notesPath); err == nil {
		in.Notes = string(b)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}

	if svg != "" {
		if err := report.Chart(in.Cmp, svg); err != nil {
			fmt.Fprintln(os.Stderr, "report: no chart:", err)
		} else {
			in.ChartLink = relLink(out, svg)
		}
	}

	var buf bytes.Buffer
	if err := report.Render(&buf, in); err != nil {
		return err
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

// relLink is the path of target relative to the directory of doc, for a
// Markdown link.
func relLink(doc, target string) string {
	d, err1 := filepath.Abs(filepath.Dir(doc))
	t, err2 := filepath.Abs(target)
	if err1 != nil || err2 != nil {
		return filepath.ToSlash(target)
	}
	rel, err := filepath.Rel(d, t)
	if err != nil {
		return filepath.ToSlash(target)
	}
	return filepath.ToSlash(rel)
}
