package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestCache(t *testing.T) {
	tests := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"cache", "-h"}, 0, "Usage: memshuffle cache"},
		{[]string{"help", "cache"}, 0, "Usage: memshuffle cache"},
		{[]string{"cache", "-tokens", "0"}, 2, ""},
		{[]string{"cache", "-lock", "bogus"}, 2, ""},
		{[]string{"cache", "extra"}, 2, ""},
		{[]string{"cache", "-tokens", "2000", "-goroutines", "2", "-duration", "300ms", "-interval", "50ms", "-lock", "besteffort", "-shards", "8", "-check"}, 0, "summary: memshuffle:"},
		{[]string{"cache", "-tokens", "2000", "-goroutines", "2", "-duration", "300ms", "-cipher", "gcm", "-lock", "besteffort", "-shards", "8", "-check", "-quiet"}, 0, "0 errors"},
		{[]string{"cache", "-tokens", "2000", "-goroutines", "2", "-duration", "200ms", "-baseline"}, 0, "summary: map+RWMutex:"},
		// An impossible target is reported, and fails the run.
		{[]string{"cache", "-tokens", "2000", "-goroutines", "2", "-duration", "200ms", "-lock", "besteffort", "-check", "-ratio", "0.5", "-slack", "0"}, 1, "target missed"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		if code := run(tt.args, strings.NewReader(""), &out, &errb); code != tt.code {
			t.Errorf("%v: exit %d, want %d (stdout %q, stderr %q)", tt.args, code, tt.code, out.String(), errb.String())
		}
		if !strings.Contains(out.String(), tt.out) {
			t.Errorf("%v: stdout %q lacks %q", tt.args, out.String(), tt.out)
		}
	}
}

// TestCacheCheckHugeAllowance: a -ratio or -slack near the int64 limit
// can only make -check's target easier to meet. The bound was computed in
// int64, where both overflowed to a negative number that every sample
// missed: -ratio 1e300 or -slack 2^63-1 failed a run that maps 64 KiB.
func TestCacheCheckHugeAllowance(t *testing.T) {
	for _, extra := range [][]string{
		{"-ratio", "1e300"},
		{"-slack", "9223372036854775807"},
		{"-ratio", "1e17", "-slack", "9223372036854775807"},
	} {
		args := append([]string{"cache", "-check", "-quiet", "-duration", "150ms", "-interval", "50ms",
			"-tokens", "10", "-shards", "1", "-lock", "none"}, extra...)
		var out, errb bytes.Buffer
		if code := run(args, strings.NewReader(""), &out, &errb); code != 0 {
			t.Errorf("%v: exit %d, want 0\n%s%s", extra, code, out.String(), errb.String())
		}
	}
}

// TestCacheQuietPrintsOnlySummary: -quiet prints the first line and the
// summary, not the samples' column header, which it printed with no rows
// under it.
func TestCacheQuietPrintsOnlySummary(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"cache", "-quiet", "-duration", "50ms", "-tokens", "10", "-shards", "1", "-lock", "none"},
		strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "summary: ") {
		t.Errorf("-quiet printed:\n%s", out.String())
	}
}
