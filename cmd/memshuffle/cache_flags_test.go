package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestCacheFlagErrors: every flag value the workload cannot run with is
// refused before anything is allocated, with exit status 2 and a message
// naming the flag. Before these checks a -tokens of 10^11 died in the
// runtime ("fatal error: out of memory") instead of exiting, a
// -goroutines of 10^9 started goroutines until memory ran out, and NaN
// passed every range check.
func TestCacheFlagErrors(t *testing.T) {
	tests := []struct {
		flag, value string
	}{
		{"tokens", "0"},
		{"tokens", "-3"},
		{"tokens", "100000000000"},
		{"goroutines", "0"},
		{"goroutines", "1000000000"},
		{"duration", "0s"},
		{"interval", "-1s"},
		{"rotations", "NaN"},
		{"rotations", "-0.1"},
		{"rotations", "1.5"},
		{"ratio", "NaN"},
		{"ratio", "+Inf"},
		{"ratio", "0"},
		{"slack", "-1"},
	}
	for _, tt := range tests {
		args := []string{"cache", "-duration", "100ms", "-" + tt.flag, tt.value}
		var out, errb bytes.Buffer
		code := run(args, strings.NewReader(""), &out, &errb)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (stdout %q)", args, code, out.String())
			continue
		}
		if first, _, _ := strings.Cut(errb.String(), "\n"); !strings.HasPrefix(first, "memshuffle cache: -"+tt.flag+" ") {
			t.Errorf("%v: first line of stderr %q does not name -%s", args, first, tt.flag)
		}
		if strings.Contains(out.String(), "summary:") {
			t.Errorf("%v: the workload ran", args)
		}
	}
}
