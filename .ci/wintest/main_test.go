package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeWine writes a script that stands in for Wine: it ignores the test
// binary it is given and runs body instead.
func fakeWine(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "wine")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNeverStarted(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want bool
	}{
		{"silent exit 1", "exit 1", true},
		{"silent exit 0", "exit 0", true},
		{"only Wine", "echo 'wine client error:0: recvmsg: Connection reset by peer' >&2; exit 1", true},
		{"only a Wine loader message", "echo 'wine: could not load kernel32.dll, status c0000135' >&2; exit 1", true},
		{"PASS", "echo PASS", false},
		{"panic before any test", "echo 'panic: boom' >&2; exit 2", false},
		{"a test ran", "printf '=== RUN   TestX\\n--- PASS: TestX (0.00s)\\nPASS\\n'", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, status, _, err := runTests(fakeWine(t, tc.body), os.Environ(), "x.exe", pkg{ImportPath: "example/p", Dir: t.TempDir()}, false, "")
			if err != nil {
				t.Fatal(err)
			}
			if got := neverStarted(res); got != tc.want {
				t.Errorf("neverStarted = %v, want %v (status %s, output %+v)", got, tc.want, status, res[""])
			}
		})
	}
}

// TestReportSaysWhy: a package that failed with no failed test is reported
// with what the run printed and how it ended, not as a bare FAIL line.
func TestReportSaysWhy(t *testing.T) {
	res, status, _, err := runTests(fakeWine(t, "echo 'wine client error:0: recvmsg: Connection reset by peer' >&2; exit 1"),
		os.Environ(), "x.exe", pkg{ImportPath: "example/p", Dir: t.TempDir()}, false, "")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if report(&out, "example/p", res, status, 0) {
		t.Fatalf("reported as passed:\n%s", out.String())
	}
	for _, want := range []string{"FAIL\texample/p", "recvmsg: Connection reset by peer", "exit status 1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestReportFailsSilentExit: a binary that printed nothing and exited 0,
// which test2json calls a pass, ran no test and fails.
func TestReportFailsSilentExit(t *testing.T) {
	res, status, _, err := runTests(fakeWine(t, "exit 0"), os.Environ(), "x.exe", pkg{ImportPath: "example/p", Dir: t.TempDir()}, false, "")
	if err != nil {
		t.Fatal(err)
	}
	if res[""] == nil || res[""].action != "pass" {
		t.Fatalf("test2json no longer calls a silent exit 0 a pass: %+v", res[""])
	}
	var out strings.Builder
	if report(&out, "example/p", res, status, 0) {
		t.Fatalf("a run that printed nothing passed:\n%s", out.String())
	}
}

// TestReportPasses: an ordinary passing run, and one whose only failures
// are Wine's t.TempDir cleanup gap, still pass.
func TestReportPasses(t *testing.T) {
	for name, body := range map[string]string{
		"pass":        "printf '=== RUN   TestX\\n--- PASS: TestX (0.00s)\\nPASS\\n'",
		"cleanup gap": "printf '=== RUN   TestX\\n    testing.go:1464: TempDir RemoveAll cleanup: unlinkat C:\\\\\\\\x: Invalid function.\\n--- FAIL: TestX (0.00s)\\nFAIL\\n'; exit 1",
	} {
		t.Run(name, func(t *testing.T) {
			res, status, _, err := runTests(fakeWine(t, body), os.Environ(), "x.exe", pkg{ImportPath: "example/p", Dir: t.TempDir()}, false, "")
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			if !report(&out, "example/p", res, status, 0) {
				t.Errorf("failed:\n%s", out.String())
			}
		})
	}
}

// TestRetryChildren: a test whose helper process Wine could not start is
// run once more, and the package passes when it passes then, unless
// another test failed too; a second failure fails it.
func TestRetryChildren(t *testing.T) {
	const first = `=== RUN   TestA
    x_test.go:1: child process failed (exit status 2):
        panic: Failed to load ws2_32.dll: DLL initialization failed. [recovered, repanicked]
--- FAIL: TestA (0.00s)
=== RUN   TestB
--- PASS: TestB (0.00s)
`
	const otherFails = `=== RUN   TestC
    x_test.go:2: a real failure
--- FAIL: TestC (0.00s)
`
	for _, tc := range []struct {
		name, first, again string
		want               bool
	}{
		{"passes again", first + "FAIL", "=== RUN   TestA\n--- PASS: TestA (0.00s)\nPASS", true},
		{"fails again", first + "FAIL", "=== RUN   TestA\n    x_test.go:1: child process failed\n--- FAIL: TestA (0.00s)\nFAIL", false},
		{"another test failed", first + otherFails + "FAIL", "=== RUN   TestA\n--- PASS: TestA (0.00s)\nPASS", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pkg{ImportPath: "example/p", Dir: t.TempDir()}
			res, status, _, err := runTests(fakeWine(t, "cat <<'EOF'\n"+tc.first+"\nEOF\nexit 1"), os.Environ(), "x.exe", p, false, "")
			if err != nil {
				t.Fatal(err)
			}
			again, why := childNotStarted(res)
			if len(again) != 1 || again[0] != "TestA" || len(why) != 1 {
				t.Fatalf("childNotStarted = %v, %q, want [TestA] and its line", again, why)
			}
			var out strings.Builder
			var asked string
			err = retryChildren(&out, p.ImportPath, res, again, why, func(run string) (map[string]*testResult, error) {
				asked = run
				r, _, _, err := runTests(fakeWine(t, "printf '"+tc.again+"\\n'"), os.Environ(), "x.exe", p, false, run)
				return r, err
			})
			if err != nil {
				t.Fatal(err)
			}
			if asked != "^(TestA)$" {
				t.Errorf("ran again %q, want ^(TestA)$", asked)
			}
			if got := report(&out, p.ImportPath, res, status, 0); got != tc.want {
				t.Errorf("report = %v, want %v:\n%s", got, tc.want, out.String())
			}
			if !strings.Contains(out.String(), "DLL initialization failed") {
				t.Errorf("the report does not say why TestA ran again:\n%s", out.String())
			}
		})
	}
}
