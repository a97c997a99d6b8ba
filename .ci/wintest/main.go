// Command wintest runs the module's tests as windows/amd64 binaries under
// Wine, so the Windows memory layer (VirtualAlloc, VirtualProtect,
// VirtualLock, the working-set retry, PAGE_NOACCESS guard pages) and the
// library above it run, not only compile.
//
// Wine is not Windows. Two of its gaps are handled here, and both are named
// in the report:
//
//   - Wine 8 has no bcryptprimitives.dll, without which the Go runtime does
//     not start; a one-function stand-in is built from dll/ with MinGW and
//     placed in a private Wine prefix.
//   - Wine 8 does not implement FileDispositionInformationEx, so os.RemoveAll
//     fails and every test that used t.TempDir fails in its cleanup. A
//     failure whose only message is that cleanup error is reported as such
//     and does not fail the run; any other message does.
//
// A test binary that ends having run no test and printed nothing of its own
// (not even the PASS or FAIL every test binary ends with) never got as far
// as the testing package: Wine did not start it. That is run once more,
// and reported with what Wine printed; a second such run fails, as does a
// package that fails with no failed test to say why, with its output.
// Likewise a test whose helper process Wine could not start (its runtime
// panicked loading a system DLL, "DLL initialization failed", before
// any code of the package ran) is run once more by itself, and named.
//
// Packages run -jobs at a time (the number of CPUs by default): a test
// binary under Wine spends seconds starting and much of its run waiting on
// wineserver, and the root package alone takes minutes. Each package's
// report is printed whole, in go list's order, once all have run.
//
// Usage, from the module root: go run ./.ci/wintest [-short] [-jobs n] [packages]
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
)

// slowTest is how long a test runs before the report names it among its
// package's slowest five.
const slowTest = 2.0

// wineCleanupGap matches the t.TempDir cleanup error that Wine 8 causes.
var wineCleanupGap = regexp.MustCompile(`TempDir RemoveAll cleanup: .*: Invalid function\.$`)

func main() {
	short := flag.Bool("short", false, "pass -test.short to the test binaries")
	jobs := flag.Int("jobs", runtime.NumCPU(), "packages to build and run at once")
	flag.Parse()
	if err := run(*short, max(*jobs, 1), flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "wintest:", err)
		os.Exit(1)
	}
}

func run(short bool, jobs int, patterns []string) error {
	wine, err := findWine()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "memshuffle-wintest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	prefix := filepath.Join(work, "prefix")
	env := append(os.Environ(), "WINEPREFIX="+prefix, "WINEDEBUG=-all")
	if err := setupPrefix(wine, prefix, env); err != nil {
		return err
	}

	if len(patterns) == 0 {
		patterns = []string{"./..."}
	}
	pkgs, err := listPackages(patterns)
	if err != nil {
		return err
	}
	type outcome struct {
		out bytes.Buffer
		ok  bool
		err error
	}
	outcomes := make([]outcome, len(pkgs))
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for i, p := range pkgs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			o := &outcomes[i]
			o.ok, o.err = testPackage(&o.out, wine, env, work, p, short)
		})
	}
	wg.Wait()
	var failed []string
	for i, p := range pkgs {
		o := &outcomes[i]
		os.Stdout.Write(o.out.Bytes())
		if o.err != nil {
			return fmt.Errorf("%s: %w", p.ImportPath, o.err)
		}
		if !o.ok {
			failed = append(failed, p.ImportPath)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("failed under Wine: %s", strings.Join(failed, ", "))
	}
	fmt.Println("wintest: all packages passed under Wine")
	return nil
}

func findWine() (string, error) {
	for _, name := range []string{"wine64", "wine"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	// Debian's wine64 package installs its loader outside PATH unless the
	// wine package is installed too.
	const debian = "/usr/lib/wine/wine64"
	if _, err := os.Stat(debian); err == nil {
		return debian, nil
	}
	return "", errors.New("wine64 not found (Debian: apt-get install wine64)")
}

// setupPrefix creates a fresh Wine prefix and, where Wine lacks it, puts the
// ProcessPrng stand-in into its system32, where the Go runtime looks.
func setupPrefix(wine, prefix string, env []string) error {
	cmd := exec.Command(wine, "wineboot", "--init")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("wineboot: %v\n%s", err, out)
	}
	sys32 := filepath.Join(prefix, "drive_c", "windows", "system32")
	dll := filepath.Join(sys32, "bcryptprimitives.dll")
	if _, err := os.Stat(dll); err == nil {
		fmt.Println("wintest: Wine provides bcryptprimitives.dll")
		return nil
	}
	cc, err := exec.LookPath("x86_64-w64-mingw32-gcc")
	if err != nil {
		return errors.New("this Wine lacks bcryptprimitives.dll and x86_64-w64-mingw32-gcc is missing to build a stand-in (Debian: apt-get install gcc-mingw-w64-x86-64)")
	}
	src := filepath.Join(".ci", "wintest", "dll")
	build := exec.Command(cc, "-shared", "-O2", "-o", dll,
		filepath.Join(src, "bcryptprimitives.c"), filepath.Join(src, "bcryptprimitives.def"), "-ladvapi32")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building bcryptprimitives.dll: %v\n%s", err, out)
	}
	fmt.Println("wintest: this Wine lacks bcryptprimitives.dll; using the ProcessPrng stand-in from .ci/wintest/dll")
	return nil
}

type pkg struct {
	ImportPath string
	Dir        string
	Name       string
}

func listPackages(patterns []string) ([]pkg, error) {
	args := append([]string{"list", "-json=ImportPath,Dir,Name"}, patterns...)
	cmd := exec.Command("go", args...)
	cmd.Env = crossEnv()
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

func crossEnv() []string {
	return append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
}

// event is one line of go tool test2json output.
type event struct {
	Action  string
	Test    string
	Output  string
	Elapsed float64 // seconds, on a test's pass, fail or skip
}

// testResult gathers what one test (or subtest) printed and how it ended.
type testResult struct {
	action  string
	lines   []string
	elapsed float64
}

func testPackage(w io.Writer, wine string, env []string, work string, p pkg, short bool) (bool, error) {
	exe := filepath.Join(work, strings.ReplaceAll(p.ImportPath, "/", "_")+".test.exe")
	build := exec.Command("go", "test", "-c", "-o", exe, p.ImportPath)
	build.Env = crossEnv()
	if out, err := build.CombinedOutput(); err != nil {
		return false, fmt.Errorf("go test -c: %v\n%s", err, out)
	}
	if _, err := os.Stat(exe); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(w, "?   \t%s\t[no test files]\n", p.ImportPath)
		return true, nil
	}

	for attempt := 1; ; attempt++ {
		results, status, elapsed, err := runTests(wine, env, exe, p, short, "")
		if err != nil {
			return false, err
		}
		if again, why := childNotStarted(results); attempt == 1 && len(again) > 0 && !neverStarted(results) {
			err := retryChildren(w, p.ImportPath, results, again, why, func(run string) (map[string]*testResult, error) {
				r, _, _, err := runTests(wine, env, exe, p, short, run)
				return r, err
			})
			if err != nil {
				return false, err
			}
			return report(w, p.ImportPath, results, status, elapsed), nil
		}
		if attempt == 1 && neverStarted(results) {
			// The binary died before the testing package printed anything,
			// so no test ran: Wine failed to start the process. Nothing a
			// test does can end a run this way (a panic, a failed TestMain,
			// an os.Exit all print, and a hang would not end it), so one
			// more run cannot hide a failure of the package. Say so, with
			// whatever Wine printed, and run it again once.
			fmt.Fprintf(w, "wintest: %s: the test binary ended after %v (%s) without running a test or printing anything of its own; the run printed:\n",
				p.ImportPath, elapsed, status)
			printLines(w, results[""])
			fmt.Fprintln(w, "wintest: running it once more")
			continue
		}
		return report(w, p.ImportPath, results, status, elapsed), nil
	}
}

// runTests runs the package's test binary under Wine through test2json once
// (only the tests run matches, where it is not empty) and gathers what each
// test printed and how it ended, and how the process exited.
func runTests(wine string, env []string, exe string, p pkg, short bool, run string) (map[string]*testResult, string, time.Duration, error) {
	args := []string{"tool", "test2json", "-p", p.ImportPath, wine, exe, "-test.v=test2json", "-test.count=1"}
	if short {
		args = append(args, "-test.short")
	}
	if run != "" {
		args = append(args, "-test.run", run)
	}
	cmd := exec.Command("go", args...)
	// Tests find their testdata relative to the package directory.
	cmd.Dir = p.Dir
	cmd.Env = env
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", 0, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, "", 0, err
	}
	results := map[string]*testResult{}
	get := func(name string) *testResult {
		r := results[name]
		if r == nil {
			r = &testResult{}
			results[name] = r
		}
		return r
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, "", 0, fmt.Errorf("test2json: %v: %s", err, sc.Bytes())
		}
		r := get(ev.Test)
		switch ev.Action {
		case "output":
			r.lines = append(r.lines, strings.TrimRight(ev.Output, "\n"))
		case "pass", "fail", "skip":
			r.action, r.elapsed = ev.Action, ev.Elapsed
		}
	}
	if err := sc.Err(); err != nil {
		return nil, "", 0, err
	}
	// test2json exits non-zero when the tests fail; the events say why, and
	// the binary's own exit status is in its last output line when it
	// printed nothing else.
	status := "exit status 0"
	if err := cmd.Wait(); err != nil {
		status = err.Error()
	}
	return results, status, time.Since(start).Round(10 * time.Millisecond), nil
}

// notOwnOutput matches what a run prints that does not come from the test
// binary: test2json's note of an exit status, and Wine's own messages.
var notOwnOutput = regexp.MustCompile(`^(test2json: |wine: |wine client error)`)

// wineChildStart matches the panic of a Go program whose runtime Wine could
// not give a system DLL: the helper process a test started never ran.
var wineChildStart = regexp.MustCompile(`Failed to load \S+\.dll: DLL initialization failed`)

// childNotStarted lists the failed top-level tests whose output has a
// helper process that Wine could not start, with the line that says so.
func childNotStarted(results map[string]*testResult) (names, why []string) {
	for _, name := range sortedNames(results) {
		r := results[name]
		if strings.Contains(name, "/") || r.action != "fail" {
			continue
		}
		for _, l := range r.lines {
			if wineChildStart.MatchString(l) {
				names, why = append(names, name), append(why, strings.TrimSpace(l))
				break
			}
		}
	}
	return names, why
}

// retryChildren runs the tests again (see childNotStarted) once, through
// rerun, which runs the tests its -test.run pattern matches, says so on w,
// and puts their new results in place of the old in results, the
// package's result included: passed, unless another test failed too.
func retryChildren(w io.Writer, path string, results map[string]*testResult, again, why []string, rerun func(run string) (map[string]*testResult, error)) error {
	fmt.Fprintf(w, "wintest: %s: Wine could not start the helper process of %s; running them once more:\n", path, strings.Join(again, ", "))
	for i, name := range again {
		fmt.Fprintln(w, "    "+name+": "+why[i])
	}
	res, err := rerun("^(" + strings.Join(again, "|") + ")$")
	if err != nil {
		return err
	}
	for name := range results {
		for _, a := range again {
			if name == a || strings.HasPrefix(name, a+"/") {
				delete(results, name)
			}
		}
	}
	for name, r := range res {
		if name != "" {
			results[name] = r
		}
	}
	pkgResult := results[""]
	if r := res[""]; r == nil || pkgResult == nil || r.action != "pass" {
		return nil
	}
	// The first run failed for those tests; a failure of any other is
	// still in results and fails the package.
	pkgResult.action = "pass"
	for name, r := range results {
		if name != "" && !strings.Contains(name, "/") && r.action == "fail" {
			pkgResult.action = "fail"
		}
	}
	return nil
}

// sortedNames is the tests of results, the package's own result left out,
// sorted, so that each subtest comes after its parent.
func sortedNames(results map[string]*testResult) []string {
	var names []string
	for name := range results {
		if name != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// neverStarted reports whether the test binary ran no test and printed
// nothing of its own: not even the PASS or FAIL with which every test
// binary ends.
func neverStarted(results map[string]*testResult) bool {
	for name, r := range results {
		if name != "" {
			return false
		}
		for _, l := range r.lines {
			if !notOwnOutput.MatchString(l) && strings.TrimSpace(l) != "" {
				return false
			}
		}
	}
	return true
}

func printLines(w io.Writer, r *testResult) {
	if r == nil || len(r.lines) == 0 {
		fmt.Fprintln(w, "    (nothing)")
		return
	}
	for _, l := range r.lines {
		fmt.Fprintln(w, "    "+l)
	}
}

// report prints one package's outcome to w and says whether it passed,
// counting a failure caused only by Wine's missing
// FileDispositionInformationEx as a pass. status is how the process ended.
func report(w io.Writer, path string, results map[string]*testResult, status string, elapsed time.Duration) bool {
	names := sortedNames(results)

	// A failed test is excused when its own messages are all the cleanup gap
	// and every failed subtest is excused too. Subtests sort after their
	// parent, so walk in reverse.
	excused := map[string]bool{}
	for i := len(names) - 1; i >= 0; i-- {
		name := names[i]
		r := results[name]
		if r.action != "fail" {
			continue
		}
		gap, other := 0, 0
		for _, l := range r.lines {
			switch {
			case isFramework(l):
			case wineCleanupGap.MatchString(l):
				gap++
			default:
				other++
			}
		}
		children, childrenOK := 0, true
		for _, sub := range names[i+1:] {
			if !strings.HasPrefix(sub, name+"/") {
				break
			}
			if results[sub].action == "fail" && strings.Count(sub, "/") == strings.Count(name, "/")+1 {
				children++
				childrenOK = childrenOK && excused[sub]
			}
		}
		excused[name] = other == 0 && childrenOK && (gap > 0 || children > 0)
	}

	var passed, skipped, gapOnly int
	var real []string
	for _, name := range names {
		switch r := results[name]; r.action {
		case "pass":
			passed++
		case "skip":
			skipped++
			fmt.Fprintf(w, "    skip %s: %s\n", name, lastMessage(r.lines))
		case "fail":
			if excused[name] {
				if !strings.Contains(name, "/") {
					gapOnly++
				}
				continue
			}
			real = append(real, name)
		}
	}
	pkgResult := results[""]
	// A package that failed with no failed test (an exit from TestMain, a
	// crash between tests) is a real failure too, and so is a binary that
	// printed nothing of its own, which test2json reports as a pass when
	// its exit status is 0.
	ok := len(real) == 0 && pkgResult != nil && !neverStarted(results) &&
		(pkgResult.action == "pass" || pkgResult.action == "fail" && gapOnly > 0)
	verdict := "ok  "
	if !ok {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "%s\t%s\t%v\t%d passed, %d skipped", verdict, path, elapsed, passed, skipped)
	if gapOnly > 0 {
		fmt.Fprintf(w, ", %d failed only in t.TempDir cleanup (Wine)", gapOnly)
	}
	fmt.Fprintln(w)
	// The slowest tests, for whoever has to keep CI within its time.
	var slow []string
	for _, name := range names {
		if !strings.Contains(name, "/") && results[name].elapsed >= slowTest {
			slow = append(slow, name)
		}
	}
	sort.SliceStable(slow, func(i, j int) bool { return results[slow[i]].elapsed > results[slow[j]].elapsed })
	for _, name := range slow[:min(len(slow), 5)] {
		fmt.Fprintf(w, "    slow %s: %.1fs\n", name, results[name].elapsed)
	}
	for _, name := range real {
		fmt.Fprintf(w, "--- FAIL: %s\n", name)
		for _, l := range results[name].lines {
			if !isFramework(l) {
				fmt.Fprintln(w, l)
			}
		}
	}
	if !ok && len(real) == 0 {
		// Nothing above says why: what the binary and Wine printed outside
		// any test, and how the process ended, do.
		fmt.Fprintf(w, "%s: no failed test explains the failure; test2json ended with %s, and the run printed outside any test:\n", path, status)
		printLines(w, pkgResult)
	}
	return ok
}

func isFramework(line string) bool {
	t := strings.TrimSpace(line)
	for _, p := range []string{"=== ", "--- PASS", "--- FAIL", "--- SKIP"} {
		if strings.HasPrefix(t, p) {
			return true
		}
	}
	return t == ""
}

func lastMessage(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if !isFramework(lines[i]) {
			return strings.TrimSpace(lines[i])
		}
	}
	return "(no reason given)"
}
