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
	"unsafe"

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
	return startHelperWith(t, mode, func(*exec.Cmd) {})
}

// startHelperWith is startHelper that lets set change the command (its
// directory, environment or standard error) before it starts.
func startHelperWith(t *testing.T, mode string, set func(*exec.Cmd)) *helperProc {
	t.Helper()
	// By its absolute path: set may change the directory, and the binary
	// may have been started by a relative one.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), "MEMSHUFFLE_CHILD="+mode)
	cmd.Stderr = os.Stderr
	set(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
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

// macMemLine is the line a helper prints to say where MAC's memory is,
// which is not locked and so not among the mappings the tests leave out
// as the library's: "macmem START END", both 0 before any MAC mapped it.
func macMemLine() string {
	var lo, hi uintptr
	if m := macMem.Load(); m != nil {
		lo = uintptr(unsafe.Pointer(unsafe.SliceData(m.data)))
		hi = lo + uintptr(len(m.data))
	}
	return fmt.Sprintf("macmem %d %d", lo, hi)
}

// macMemRange reads the helper's macMemLine and returns the range it
// names, [lo, hi).
func (h *helperProc) macMemRange(t *testing.T) (lo, hi uint64) {
	t.Helper()
	if !h.stdout.Scan() {
		t.Fatal("helper said nothing, want where MAC's memory is")
	}
	if _, err := fmt.Sscanf(h.stdout.Text(), "macmem %d %d", &lo, &hi); err != nil {
		t.Fatalf("helper said %q, want where MAC's memory is: %v", h.stdout.Text(), err)
	}
	return lo, hi
}

// libraryMemory reports whether a hit is in memory of the library's own:
// a locked, dump-excluded anonymous mapping (arenas, keys) or MAC's
// memory, [macLo, macHi).
func libraryMemory(h memscan.Hit, macLo, macHi uint64) bool {
	m := h.Mapping
	return m.Path == "" && m.Locked && m.DontDump || h.Addr >= macLo && h.Addr < macHi
}
