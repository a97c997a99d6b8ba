package main

import (
	"bytes"
	"strings"
	"testing"
)

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
