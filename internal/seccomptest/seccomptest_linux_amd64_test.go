package seccomptest

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// markEnv names the file a child's body writes to show that it ran. The
// parent sets it; the child inherits it and must not set its own.
const markEnv = "MEMSHUFFLE_SECCOMPTEST_MARK"

func markFile(t *testing.T) string {
	if p := os.Getenv(markEnv); p != "" {
		return p
	}
	p := filepath.Join(t.TempDir(), "ran")
	t.Setenv(markEnv, p)
	return p
}

// TestRunRunsTheBody: a subtest whose name holds a regular expression's
// metacharacter must still have its body run in the child. The child was
// started with the name as a pattern, matched nothing, passed with "no
// tests to run", and the parent passed without running the body.
func TestRunRunsTheBody(t *testing.T) {
	mark := markFile(t)
	t.Run("a+b", func(t *testing.T) {
		Run(t, "metachar", []Rule{Refuse(unix.SYS_MLOCK2, unix.EPERM)}, func(t *testing.T) {
			if err := os.WriteFile(mark, []byte("ran"), 0o600); err != nil {
				t.Fatal(err)
			}
		})
	})
	if _, err := os.Stat(mark); err != nil {
		t.Fatalf("the body did not run: %v", err)
	}
}

// TestRunSkipsWhereTheBodySkips: a body that skips in the child (no smaps
// to read, say) checked nothing, and the parent must say so; it passed.
func TestRunSkipsWhereTheBodySkips(t *testing.T) {
	var skipped bool
	t.Run("inner", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		Run(t, "skip", []Rule{Refuse(unix.SYS_MLOCK2, unix.EPERM)}, func(t *testing.T) {
			t.Skip("nothing to check here")
		})
	})
	if !skipped {
		t.Error("the body skipped in the child and the parent reported a pass")
	}
}
