// Command memshuffle shows the memshuffle library at work and searches
// process memory for secrets.
//
// Usage:
//
//	memshuffle demo                 run the quick-start story on a real secret
//	memshuffle scan [flags]         search a process or core file for a byte pattern
//	memshuffle cache [flags]        run a token-cache workload and report memory and throughput
//	memshuffle version              print the version
//	memshuffle help [command]       show help
//
// Exit codes: 0 success (for scan: the pattern was not found), 1 the pattern
// was found (scan), the demo saw something it should not have, or a target
// was missed (cache -check), 2 a usage or runtime error.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `memshuffle: keep secrets encrypted off the Go heap, and check that they are.

Usage:
  memshuffle demo                 run the quick-start story on a real secret
  memshuffle scan [flags]         search a process or core file for a byte pattern
  memshuffle cache [flags]        run a token-cache workload and report memory and throughput
  memshuffle version              print the version
  memshuffle help [command]       show help for a command

Exit codes: 0 success (scan: not found), 1 found (scan), demo check failed or
target missed (cache -check), 2 usage or runtime error.
`

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "demo":
		return runDemo(args[1:], stdout, stderr)
	case "scan":
		return runScan(args[1:], stdin, stdout, stderr)
	case "cache":
		return runCache(args[1:], stdout, stderr)
	case "version":
		return runVersion(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		// "help help" is the usage again, not help about help: that
		// recursion never ended.
		if len(args) > 2 {
			fmt.Fprintf(stderr, "memshuffle help: unexpected argument %q\n\n%s", args[2], usage)
			return 2
		}
		if len(args) > 1 && !isHelp(args[1]) {
			return run([]string{args[1], "-h"}, stdin, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "memshuffle: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// isHelp reports whether arg asks for the usage.
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

const versionUsage = `Usage: memshuffle version

Prints the module version memshuffle was built from, or (devel) for a build
from a work tree.

Exit status: 0, or 2 for a usage error.
`

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), versionUsage) }
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "memshuffle version: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	fmt.Fprintln(stdout, "memshuffle", version())
	return 0
}

// parseFlags parses args into fs. Asked for help (-h), it prints the usage
// on stdout and returns done with code 0; for a bad flag it prints the
// error and the usage on stderr and returns done with code 2. Otherwise it
// leaves fs writing to stderr, for the caller's own usage errors.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, done bool) {
	fs.SetOutput(io.Discard) // the error is printed below, once
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return 0, true
	case err != nil:
		fs.SetOutput(stderr)
		fmt.Fprintf(stderr, "memshuffle %s: %v\n", fs.Name(), err)
		fs.Usage()
		return 2, true
	}
	fs.SetOutput(stderr)
	return 0, false
}

func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" {
		return "(devel)"
	}
	return bi.Main.Version
}
