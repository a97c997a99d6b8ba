// Command readenv moves a secret from an environment variable into a
// memshuffle Shuffler with the least exposure the environment allows, and
// says what it cannot take back.
//
//	SECRET='correct horse' go run ./examples/readenv
//	DB_PASSWORD=... go run ./examples/readenv -name DB_PASSWORD
//
// The environment is a poor place for a secret, and this program shows why
// as much as how. When the secret can come another way, read it from a file
// (a mounted secret, a systemd credential, a file descriptor) or from
// standard input with memshuffle.ReadFrom, which reads straight into the
// entry, so that no copy exists outside it:
//
//	f, err := os.Open("/run/secrets/db_password")
//	...
//	fi, err := f.Stat()
//	...
//	h, err := memshuffle.ReadFrom(s, f, int(fi.Size()))
//
// examples/tlsserver does that in full (readTokenFile in token.go).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/memshuffle/memshuffle"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "readenv:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("readenv", flag.ContinueOnError)
	name := fs.String("name", "SECRET", "the environment `variable` holding the secret")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// An argument is most likely a variable meant for -name: ignored, the
	// default variable would be moved in its place, and it left set.
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; name the variable with -name", fs.Arg(0))
	}

	s, err := memshuffle.New()
	if err != nil {
		return err
	}
	defer s.Close() // wipes the entry

	h, err := moveEnv(s, *name)
	if err != nil {
		return err
	}
	n, err := s.Size(h)
	if err != nil {
		return err
	}
	_, stillSet := os.LookupEnv(*name)
	fmt.Fprintf(stdout, "moved $%s into a Shuffler entry: %d bytes, encrypted at rest\n", *name, n)
	fmt.Fprintf(stdout, "$%s is set: %v\n", *name, stillSet)

	// From here on, use the secret only while borrowing it, and hand the
	// borrowed slice to what needs it without making copies of your own:
	//
	//	err = memshuffle.BorrowViewSlice(s, h, func(secret []byte) error {
	//		return useSecret(secret)
	//	})
	return nil
}

// errNotSet is returned by moveEnv when the variable is not in the
// environment.
var errNotSet = errors.New("not set")

// moveEnv moves the environment variable name into a new entry of s and
// unsets it, whether or not the move succeeds.
//
// What it cannot take back, because it lies outside anything Go can wipe:
//
//   - The environment block the process started with. The kernel put every
//     NAME=value at the top of the main thread's stack at exec, and there it
//     stays for the life of the process: /proc/PID/environ reads it (root
//     can, and so can other processes of the same user unless the process
//     is made undumpable, see memshuffle.DisableCoreDumps), and a core dump
//     holds it. Go never writes to it, and Unsetenv leaves its bytes where
//     they are.
//
//   - The Go runtime's copy. At start-up the runtime copies each NAME=value
//     into a Go string on the heap, and os.LookupEnv returns a part of that
//     string: immutable, so it cannot be wiped. Unsetenv drops the runtime's
//     reference; once the returned string is gone too, the bytes are
//     garbage, still readable until the allocator reuses the memory.
//
//   - Everything outside the process: the shell or service manager that set
//     the variable (its own memory, a unit file, shell history, docker
//     inspect), and any child process started before Unsetenv, which got
//     its own copy.
//
// What it does do: the one copy it makes itself, the []byte conversion, is
// wiped by CopyFrom once it is in the entry, or here if it cannot be stored,
// and Unsetenv keeps the variable from every child process started from now
// on (os/exec passes the current environment by default).
func moveEnv(s *memshuffle.Shuffler, name string) (memshuffle.Handle, error) {
	v, ok := os.LookupEnv(name)
	if !ok {
		return memshuffle.Handle{}, fmt.Errorf("$%s: %w", name, errNotSet)
	}
	if v == "" {
		os.Unsetenv(name)
		return memshuffle.Handle{}, fmt.Errorf("$%s is empty", name)
	}
	// A converted []byte is a fresh copy of v that this function owns, so
	// it may be wiped. (Never convert back the other way: string(b) of a
	// secret is one more copy nobody can wipe.) CopyFrom wipes it once the
	// entry holds it; on failure it leaves it to us.
	b := []byte(v)
	h, err := memshuffle.CopyFrom(s, b)
	if err != nil {
		memshuffle.Wipe(b)
	}
	if uerr := os.Unsetenv(name); err == nil && uerr != nil {
		s.Free(h)
		err = uerr
	}
	if err != nil {
		return memshuffle.Handle{}, fmt.Errorf("$%s: %w", name, err)
	}
	return h, nil
}
