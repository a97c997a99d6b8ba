package memshuffle

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// runChildOK runs the test binary as the helper process name (through
// MEMSHUFFLE_CHILD, which an init function of the helper's test file
// answers) and logs its last line, which must start with "ok ". One that
// starts with "skip " skips the test. env is added to the helper's
// environment.
func runChildOK(t *testing.T, name string, env ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), env...), "MEMSHUFFLE_CHILD="+name)
	out, err := cmd.CombinedOutput()
	last := lastLine(string(out))
	if strings.HasPrefix(last, "skip ") {
		t.Skip(last)
	}
	if err != nil || !strings.HasPrefix(last, "ok ") {
		if len(out) > 4000 {
			out = out[:4000]
		}
		t.Fatalf("helper %s: %v\n%s", name, err, out)
	}
	t.Log(last)
}
