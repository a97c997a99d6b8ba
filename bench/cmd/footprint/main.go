// Command footprint measures what holding many live secrets costs in
// memory with each library: resident memory, locked memory and mappings.
//
//	footprint [-counts 10000,1000000] [-libs memshuffle,...] [-size 32] [-timeout 5m] [-json out.json]
//
// Every (library, count) pair runs in a fresh child process (the tool runs
// itself with -child), for three reasons: each measurement starts from the
// same clean process; memguard purges and panics, or deadlocks, when the
// kernel refuses it memory or mappings, and the Go runtime dies outright
// when a process has used up its map count; and memguard disables core
// dumps for any process that imports it. A child that fails, crashes or
// runs past -timeout becomes a row saying so, with the figures of its last
// checkpoint, instead of stopping the tool.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/memshuffle/memshuffle/bench/internal/footprint"
)

// allLibs are the libraries measured, in the order of the table.
var allLibs = []string{"memshuffle", "memguard-enclave", "memguard-buffer", "heap"}

func main() {
	child := flag.Bool("child", false, "internal: measure one library in this process")
	lib := flag.String("lib", "", "internal, with -child: the library")
	n := flag.Int("n", 0, "internal, with -child: how many secrets")
	counts := flag.String("counts", "10000,1000000", "comma-separated numbers of live secrets")
	libs := flag.String("libs", strings.Join(allLibs, ","), "comma-separated libraries")
	size := flag.Int("size", 32, "bytes per secret")
	timeout := flag.Duration("timeout", 5*time.Minute, "limit for each child process")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	flag.Parse()

	if *child {
		os.Exit(runChild(os.Stdout, *lib, *n, *size))
	}
	if err := run(*counts, *libs, *size, *timeout, *jsonOut); err != nil {
		fmt.Fprintln(os.Stderr, "footprint:", err)
		os.Exit(1)
	}
}

func run(countList, libList string, size int, timeout time.Duration, jsonOut string) error {
	var counts []int
	for f := range strings.SplitSeq(countList, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			return fmt.Errorf("bad count %q in -counts", f)
		}
		counts = append(counts, c)
	}
	var libs []string
	for f := range strings.SplitSeq(libList, ",") {
		f = strings.TrimSpace(f)
		if _, ok := holders[f]; !ok {
			return fmt.Errorf("unknown library %q in -libs (have %s)", f, strings.Join(allLibs, ", "))
		}
		libs = append(libs, f)
	}
	if size < 1 {
		return fmt.Errorf("bad -size %d", size)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}

	res := footprint.Result{
		Size:         size,
		Timeout:      timeout.String(),
		MemlockLimit: memlockLimit(),
		MaxMapCount:  readTrimmed("/proc/sys/vm/max_map_count"),
		UID:          os.Getuid(),
	}
	for _, c := range counts {
		for _, lib := range libs {
			fmt.Fprintf(os.Stderr, "footprint: %s with %d secrets...\n", lib, c)
			args := []string{"-child", "-lib", lib, "-n", strconv.Itoa(c), "-size", strconv.Itoa(size)}
			row := measureChild(exe, args, timeout)
			row.Lib, row.Count = lib, c
			fmt.Fprintf(os.Stderr, "footprint:   %s\n", describe(row))
			res.Rows = append(res.Rows, row)
		}
	}

	writeTable(os.Stdout, res)
	if jsonOut != "" {
		b, err := json.MarshalIndent(res, "", "\t")
		if err != nil {
			return err
		}
		if err := os.WriteFile(jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// event is one line a child writes on stdout.
type event struct {
	Kind        string  `json:"kind"` // "baseline", "count", "progress", "done" or "failed"
	N           int     `json:"n"`    // secrets made so far
	Refs        int64   `json:"refs,omitempty"`
	RSS         int64   `json:"rss,omitempty"`
	Locked      int64   `json:"locked,omitempty"`
	Maps        int     `json:"maps,omitempty"`
	NsPerSecret float64 `json:"ns_per_secret,omitempty"`
	Error       string  `json:"error,omitempty"`
	Note        string  `json:"note,omitempty"`
}

// measureChild runs one child and turns what it reported, or how it died,
// into a Row. It never fails: every way a child can end is a result.
func measureChild(exe string, args []string, timeout time.Duration) footprint.Row {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 10 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return footprint.Row{Outcome: "crashed", Error: err.Error()}
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return footprint.Row{Outcome: "crashed", Error: err.Error()}
	}
	var base, last, final *event
	counted := 0
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		switch e.Kind {
		case "baseline":
			base = &e
		case "count":
			counted = e.N
		case "progress":
			last = &e
			counted = e.N
		case "done", "failed":
			final = &e
		}
	}
	io.Copy(io.Discard, stdout) // after a line too long for the scanner
	waitErr := cmd.Wait()
	row := footprint.Row{Seconds: time.Since(start).Seconds()}

	// at fills in the figures of e relative to the baseline.
	at := func(e *event) {
		if e == nil || base == nil {
			return
		}
		row.Held = e.N
		row.RSSBytes = e.RSS - base.RSS
		row.RefBytes = e.Refs
		row.LockedBytes = e.Locked - base.Locked
		row.Mappings = e.Maps - base.Maps
		row.NsPerSecret = e.NsPerSecret
	}
	switch {
	case final != nil && final.Kind == "done" && waitErr == nil:
		row.Outcome = "ok"
		at(final)
		row.Reached = final.N
		row.Note = final.Note
		return row
	case final != nil && final.Kind == "failed":
		row.Outcome = "failed"
		at(last)
		row.Reached = final.N
		row.Error = final.Error
		return row
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		row.Outcome = "timed out"
		row.Error = fmt.Sprintf("no result within %v; killed", timeout)
	default:
		row.Outcome = "crashed"
		row.Error = crashReason(stderr.String(), waitErr)
	}
	at(last)
	row.Reached = counted
	return row
}

// crashReason picks the line of a dead child's stderr that says why it
// died: the Go runtime's "fatal error:" or a "panic:" line, else the last
// line, else the exit status.
func crashReason(stderr string, waitErr error) string {
	var lastLine string
	for line := range strings.Lines(stderr) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "fatal error:") || strings.HasPrefix(line, "panic:") ||
			strings.HasPrefix(line, "runtime:") {
			return line
		}
		if line != "" {
			lastLine = line
		}
	}
	switch {
	case lastLine != "":
		return lastLine
	case waitErr != nil:
		return waitErr.Error()
	}
	return "exited without a result"
}

// describe is the one-line summary of a row for progress output.
func describe(r footprint.Row) string {
	switch r.Outcome {
	case "ok":
		return fmt.Sprintf("ok: RSS +%s, locked +%s, %+d mappings, %.0f ns/secret",
			mib(r.RSSBytes), mib(r.LockedBytes), r.Mappings, r.NsPerSecret)
	case "failed":
		return fmt.Sprintf("failed after %d secrets: %s", r.Reached, r.Error)
	default:
		return fmt.Sprintf("%s after %d+ secrets (figures from %d): %s", r.Outcome, r.Reached, r.Held, r.Error)
	}
}

func writeTable(w io.Writer, res footprint.Result) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "library\tsecrets\toutcome\theld\tRSS\tof which refs\tRSS/secret bytes\tlocked\tmappings\tns/secret\t\n")
	for _, r := range res.Rows {
		ratio := "-"
		if r.Held > 0 {
			ratio = fmt.Sprintf("%.2f", float64(r.RSSBytes)/float64(r.Held*res.Size))
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t%.0f\t\n",
			r.Lib, r.Count, r.Outcome, r.Held, mib(r.RSSBytes), mib(r.RefBytes), ratio, mib(r.LockedBytes), r.Mappings, r.NsPerSecret)
	}
	tw.Flush()
	for _, r := range res.Rows {
		if r.Outcome != "ok" {
			fmt.Fprintf(w, "%s, %d secrets: %s\n", r.Lib, r.Count, describe(r))
		}
	}
	fmt.Fprintf(w, "size %d B; RLIMIT_MEMLOCK %s; vm.max_map_count %s; uid %d; timeout %s per child\n",
		res.Size, res.MemlockLimit, res.MaxMapCount, res.UID, res.Timeout)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// memlockLimit returns the soft "Max locked memory" limit of this process.
func memlockLimit() string {
	raw, err := os.ReadFile("/proc/self/limits")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, "Max locked memory"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				if len(f) >= 3 && f[0] != "unlimited" {
					return f[0] + " " + f[2]
				}
				return f[0]
			}
		}
	}
	return "unknown"
}

func readTrimmed(path string) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(raw))
}
