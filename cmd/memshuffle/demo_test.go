package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestDemo(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"demo"}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	got := out.String()
	for _, want := range []string{
		"while rented: scan of all process memory finds the token 1 time(s)",
		"at rest: scan of all process memory finds the token 0 time(s)",
		"after shuffles: scan of all process memory finds the token 0 time(s)",
		"after free: scan of all process memory finds the token 0 time(s)",
		"Valid(h) = false",
	} {
		if !strings.Contains(got, want) && !strings.Contains(got, "not possible here") {
			t.Errorf("demo output lacks %q:\n%s", want, got)
		}
	}
}

func TestCommands(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		out    string
		stderr string
	}{
		{nil, 2, "", ""},
		{[]string{"bogus"}, 2, "", ""},
		{[]string{"help"}, 0, "Usage:", ""},
		{[]string{"-h"}, 0, "Usage:", ""},
		{[]string{"version"}, 0, "memshuffle ", ""},
		{[]string{"demo", "-h"}, 0, "Usage: memshuffle demo", ""},
		{[]string{"demo", "extra"}, 2, "", `unexpected argument "extra"`},
		{[]string{"demo", "-bogus"}, 2, "", ""},
		{[]string{"help", "demo"}, 0, "Usage: memshuffle demo", ""},
		{[]string{"help", "scan"}, 0, "Usage: memshuffle scan", ""},
		{[]string{"version", "-h"}, 0, "Usage: memshuffle version", ""},
		{[]string{"help", "version"}, 0, "Usage: memshuffle version", ""},
		{[]string{"version", "extra"}, 2, "", `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		if code := run(tt.args, strings.NewReader(""), &out, &errb); code != tt.code {
			t.Errorf("%v: exit %d, want %d (stderr %q)", tt.args, code, tt.code, errb.String())
		}
		if !strings.Contains(out.String(), tt.out) {
			t.Errorf("%v: stdout %q lacks %q", tt.args, out.String(), tt.out)
		}
		if !strings.Contains(errb.String(), tt.stderr) {
			t.Errorf("%v: stderr %q lacks %q", tt.args, errb.String(), tt.stderr)
		}
	}
}
