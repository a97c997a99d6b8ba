package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/memshuffle/memshuffle/internal/memscan"
)

const scanUsage = `Usage: memshuffle scan (-pid N | -core FILE) (-hex HEX | -file PATH | -stdin)

Searches the memory of a running process or an ELF core file for a byte
pattern and prints one line per occurrence. A process is read through
/proc/PID/mem on Linux, which needs permission to ptrace it, and with
ReadProcessMemory on Windows, which needs PROCESS_VM_READ access and skips
PAGE_NOACCESS pages; other systems cannot scan a process.

  ADDRESS +OFFSET START-END PERMS NAME [locked] [dontdump]

OFFSET is the distance from the start of the mapping; "locked" marks mlocked
memory (it cannot be swapped out), "dontdump" memory left out of core dumps
(both reported on Linux only).
A summary line "N hits in M mappings scanned" ends the output.

The pattern is taken as raw bytes from a file or from standard input, so a
secret need not appear on the command line, or as hex (visible in ps), of 1
byte to 64 KiB. It is masked in memory while scanning, and never printed.

Exit status: 0 the pattern was not found, 1 it was found, 2 usage or runtime
error.

Flags:
`

// runScan implements `memshuffle scan`. It returns the process exit code: 0
// when the pattern was not found, 1 when it was found, 2 on a usage or
// runtime error, and 0 for -h. Hits found before a runtime error are still
// printed.
func runScan(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("scan", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), scanUsage)
		fs.PrintDefaults()
	}
	pid := fs.Int("pid", 0, "scan the memory of the running process `N`")
	core := fs.String("core", "", "scan the ELF core `FILE`")
	hexPat := fs.String("hex", "", "the pattern in `HEX`")
	filePat := fs.String("file", "", "the pattern is the raw bytes of the file at `PATH`")
	stdinPat := fs.Bool("stdin", false, "the pattern is the raw bytes of standard input")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	set["stdin"] = *stdinPat // -stdin=false chooses nothing

	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "memshuffle scan: "+format+"\n", a...)
		fs.Usage()
		return 2
	}
	switch {
	case fs.NArg() > 0:
		return usageErr("unexpected argument %q", fs.Arg(0))
	case set["pid"] == set["core"]:
		return usageErr("give exactly one of -pid and -core")
	case scanCount(set["hex"], set["file"], set["stdin"]) != 1:
		return usageErr("give exactly one of -hex, -file and -stdin")
	case set["pid"] && *pid <= 0:
		return usageErr("-pid must be a positive process id, not %d", *pid)
	case set["core"] && *core == "":
		return usageErr("-core needs a file name")
	}

	fail := func(err error) int {
		fmt.Fprintln(stderr, "memshuffle scan:", err)
		return 2
	}
	var src io.Reader
	switch {
	case set["hex"]:
		if len(*hexPat)%2 == 1 {
			return fail(fmt.Errorf("-hex: an odd number of hex digits (%d)", len(*hexPat)))
		}
		// The decoder writes the raw bytes straight into ReadPattern's
		// off-heap buffer; only the hex text sits on the heap.
		src = hex.NewDecoder(strings.NewReader(*hexPat))
	case set["file"]:
		f, err := os.Open(*filePat)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		src = f
	default:
		if stdin == nil {
			return fail(errors.New("no standard input"))
		}
		src = stdin
	}
	// ReadPattern is NewPattern over an off-heap buffer it wipes and
	// unmaps once the masked Pattern exists: no plaintext copy of the
	// pattern is left in this process for the scan to find (or for a
	// later one to find).
	p, err := memscan.ReadPattern(src)
	if err != nil {
		return fail(fmt.Errorf("pattern: %w", err))
	}

	var ms []memscan.Mapping
	var hits []memscan.Hit
	if set["pid"] {
		if ms, err = memscan.Maps(*pid); err == nil {
			hits, err = memscan.ScanProcess(*pid, p)
		}
	} else {
		if ms, err = memscan.CoreMaps(*core); err == nil {
			hits, err = memscan.ScanCore(*core, p)
		}
	}
	for _, h := range hits {
		fmt.Fprintln(stdout, scanHitLine(h))
	}
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "%d hits in %d mappings scanned\n", len(hits), len(ms))
	if len(hits) > 0 {
		return 1
	}
	return 0
}

// scanHitLine renders a hit as one output line of `memshuffle scan`.
func scanHitLine(h memscan.Hit) string {
	m := h.Mapping
	var b strings.Builder
	fmt.Fprintf(&b, "%#x +%#x %x-%x %s %s", h.Addr, h.Addr-m.Start, m.Start, m.End, m.Perms, m.Name())
	if m.Locked {
		b.WriteString(" locked")
	}
	if m.DontDump {
		b.WriteString(" dontdump")
	}
	return b.String()
}

// scanCount returns how many of bs are true.
func scanCount(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}
