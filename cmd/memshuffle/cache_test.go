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
