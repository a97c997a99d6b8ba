//go:build linux

package memshuffle

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/memshuffle/memshuffle/internal/memscan"
)

// helperProc is this test binary run again as a helper process, the one
// MEMSHUFFLE_CHILD selects, for a test to look into from outside: its
// memory through /proc, or a core dump of it.
type helperProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Scanner
	noCore bool // a dump failed: gcore is missing or ptrace refused
}

// startHelper starts the helper process mode names, with its stdin and
// stdout piped to the test; it is killed when the test ends.
func startHelper(t *testing.T, mode string) *helperProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "MEMSHUFFLE_CHILD="+mode)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return &helperProc{cmd: cmd, stdin: stdin, stdout: bufio.NewScanner(stdout)}
}

// pid is the helper's process ID.
func (h *helperProc) pid() int { return h.cmd.Process.Pid }

// expect fails the test unless the helper's next line is want.
func (h *helperProc) expect(t *testing.T, want string) {
	t.Helper()
	if !h.stdout.Scan() || h.stdout.Text() != want {
		t.Fatalf("helper said %q, want %q", h.stdout.Text(), want)
	}
}

// wait tells the helper to exit and waits for it to, failing the test if
// it exits with an error.
func (h *helperProc) wait(t *testing.T) {
	t.Helper()
	fmt.Fprintln(h.stdin, "exit")
	if err := h.cmd.Wait(); err != nil {
		t.Errorf("helper: %v", err)
	}
}

// scanCore dumps the helper with gcoreDump and scans the dump for ps,
// and returns the hits of each and the core file's path, which the caller
// removes. Where the dump fails it logs why, once, and reports false from
// then on: the test goes on with what /proc shows.
func (h *helperProc) scanCore(t *testing.T, ps []*memscan.Pattern) ([][]memscan.Hit, string, bool) {
	t.Helper()
	if h.noCore {
		return nil, "", false
	}
	path, err := gcoreDump(t, h.pid())
	if err != nil {
		t.Logf("no core dump scanned: %v", err)
		h.noCore = true
		return nil, "", false
	}
	res, err := memscan.ScanCoreAll(path, ps)
	if err != nil {
		os.Remove(path)
		t.Fatal(err)
	}
	return res, path, true
}

// scanLive scans the helper's memory, through /proc, for ps.
func (h *helperProc) scanLive(t *testing.T, ps []*memscan.Pattern) [][]memscan.Hit {
	t.Helper()
	res, err := memscan.ScanProcessAll(h.pid(), ps)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// gcoreDump dumps process pid with gcore (gdb) into the test's temporary
// directory and returns the core file's path. It fails, with gcore's
// output in the error, where gdb is not installed or ptrace is refused.
func gcoreDump(t *testing.T, pid int) (string, error) {
	gcore, err := exec.LookPath("gcore")
	if err != nil {
		return "", err
	}
	prefix := filepath.Join(t.TempDir(), "core")
	if out, err := exec.Command(gcore, "-o", prefix, strconv.Itoa(pid)).CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w\n%s", err, out)
	}
	return prefix + "." + strconv.Itoa(pid), nil
}
