package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestHelpExtraArgument: help of a command takes nothing after it; with
// more, it printed the command's help and succeeded, as if the rest were
// not there.
func TestHelpExtraArgument(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"help", "scan", "-pid", "1"}, strings.NewReader(""), &out, &errb)
	if code != 2 || out.Len() != 0 || !strings.Contains(errb.String(), `unexpected argument "-pid"`) {
		t.Errorf("memshuffle help scan -pid 1: exit %d, stdout %q, stderr %q; want 2 and the unexpected argument", code, out.String(), errb.String())
	}
}

// TestHelpOfHelp: help asked of help, in any of its spellings, prints the
// usage and succeeds. It recursed until the stack overflowed, a fatal
// error no recover stops.
func TestHelpOfHelp(t *testing.T) {
	for _, args := range [][]string{
		{"help"}, {"help", "help"}, {"help", "-h"}, {"-h", "-h"}, {"--help", "-help"}, {"help", "--help"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, strings.NewReader(""), &out, &errb); code != 0 || out.String() != usage {
			t.Errorf("memshuffle %s: exit %d, stdout %q, stderr %q; want 0 and the usage", strings.Join(args, " "), code, out.String(), errb.String())
		}
	}
}
