package memshuffle

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDisableCoreDumps runs in a child process, since the change is for
// the whole process and cannot be undone.
func TestDisableCoreDumps(t *testing.T) {
	if os.Getenv("MEMSHUFFLE_CHILD") == "coredump" {
		if err := DisableCoreDumps(); err != nil {
			t.Fatal(err)
		}
		var lim unix.Rlimit
		unix.Getrlimit(unix.RLIMIT_CORE, &lim)
		d, _ := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
		if lim.Cur != 0 || lim.Max != 0 || d != 0 {
			t.Fatalf("RLIMIT_CORE %+v, dumpable %d", lim, d)
		}
		return
	}
	// Importing the package changed nothing in this process.
	if d, _ := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); d != 1 {
		t.Fatalf("process not dumpable before any call: %d", d)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDisableCoreDumps$", "-test.v")
	cmd.Env = append(os.Environ(), "MEMSHUFFLE_CHILD=coredump")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
