package memshuffle_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/memshuffle/memshuffle"
)

// A key file of unknown size is read in one call, straight into entries.
// The limit keeps a wrong path (a log file, /dev/zero) from filling memory.
func ExampleReadAll() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "key.pem")
	os.WriteFile(path, []byte(strings.Repeat("k", 3000)), 0o600)

	s, _ := memshuffle.New()
	defer s.Close()
	f, err := os.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	h, err := memshuffle.ReadAll(s, f, 64<<10)
	if err != nil {
		log.Fatal(err)
	}
	n, _ := s.Size(h)
	fmt.Println(n)

	_, err = memshuffle.ReadAll(s, strings.NewReader("far too long"), 4)
	fmt.Println(errors.Is(err, memshuffle.ErrTooLarge))
	_, err = memshuffle.ReadAll(s, strings.NewReader(""), 4)
	fmt.Println(errors.Is(err, io.EOF))
	// Output:
	// 3000
	// true
	// true
}

// A password is read up to the end of its line; the delimiter is not kept,
// and the rest of the input is left for the next reader.
func ExampleReadUntil() {
	s, _ := memshuffle.New()
	defer s.Close()

	stdin := strings.NewReader("hunter2\nthe next line") // stands in for os.Stdin
	h, err := memshuffle.ReadUntil(s, stdin, '\n', 1024)
	if err != nil {
		log.Fatal(err)
	}
	memshuffle.WriteTo(s, h, os.Stdout) // only an example prints its secret
	rest, _ := io.ReadAll(stdin)
	fmt.Printf("\n%s\n", rest)
	// Output:
	// hunter2
	// the next line
}

// WriteTo sends a secret to a writer (a socket, a pipe to a child process)
// straight from the entry.
func ExampleWriteTo() {
	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.CopyFrom(s, []byte("sent from the entry\n"))

	n, err := memshuffle.WriteTo(s, h, os.Stdout)
	fmt.Println(n, err)
	// Output:
	// sent from the entry
	// 20 <nil>
}

// Random generates a key inside its entry. An entry of 32 bytes is aligned
// to 16 (see EntryAlign), so the key can also be used as four uint64s.
func ExampleRandom() {
	s, _ := memshuffle.New()
	defer s.Close()

	key, err := memshuffle.Random(s, 32)
	if err != nil {
		log.Fatal(err)
	}
	words, err := memshuffle.RentSlice[uint64](s, key)
	fmt.Println(len(words), err)
	s.Return(key)

	other, _ := memshuffle.Random(s, 32)
	same, _ := memshuffle.EqualEntries(s, key, other)
	fmt.Println(same)
	// Output:
	// 4 <nil>
	// false
}

// Equal checks a guess against a stored secret in constant time.
func ExampleEqual() {
	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.CopyFrom(s, []byte("open sesame"))

	for _, guess := range []string{"open sesame", "open sesamE", "open"} {
		ok, err := memshuffle.Equal(s, h, []byte(guess))
		fmt.Println(guess, ok, err)
	}
	// Output:
	// open sesame true <nil>
	// open sesamE false <nil>
	// open false <nil>
}

// EqualEntries compares two stored secrets without either leaving the
// Shuffler's memory.
func ExampleEqualEntries() {
	s, _ := memshuffle.New()
	defer s.Close()
	a, _ := memshuffle.CopyFrom(s, []byte("token-1"))
	b, _ := memshuffle.CopyFrom(s, []byte("token-1"))
	c, _ := memshuffle.CopyFrom(s, []byte("token-2"))

	ab, _ := memshuffle.EqualEntries(s, a, b)
	ac, _ := memshuffle.EqualEntries(s, a, c)
	fmt.Println(ab, ac)
	// Output: true false
}

// Clone copies a secret into a new entry, for a copy to change or to hand
// to code that frees it.
func ExampleClone() {
	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.CopyFrom(s, []byte("template"))

	c, err := memshuffle.Clone(s, h)
	if err != nil {
		log.Fatal(err)
	}
	memshuffle.BorrowSlice(s, c, func(b []byte) error { b[0] = 'T'; return nil })
	memshuffle.WriteTo(s, h, os.Stdout)
	fmt.Println()
	memshuffle.WriteTo(s, c, os.Stdout)
	fmt.Println()
	// Output:
	// template
	// Template
}

// PurgeAll wipes every open Shuffler of the process, without needing them
// at hand: the call for a fatal path.
func ExamplePurgeAll() {
	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.CopyFrom(s, []byte("gone"))

	memshuffle.PurgeAll()
	_, err := memshuffle.Rent[byte](s, h)
	fmt.Println(err)
	// Output: memshuffle: shuffler is closed
}

// PurgeAllOnSignal wipes every Shuffler on SIGINT or SIGTERM, then runs a
// callback (the secrets are already gone), then exits with 128 plus the
// signal's number. stop uninstalls it; nothing is installed on import.
func ExamplePurgeAllOnSignal() {
	stop := memshuffle.PurgeAllOnSignal(func(sig os.Signal) {
		fmt.Fprintln(os.Stderr, "purged on", sig)
	}, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.Random(s, 32)
	fmt.Println(s.Valid(h))
	// Output: true
}

// SafePanic purges everything before panicking, so a crash (and its core
// dump, if the process makes one) holds no secret. A recovered SafePanic
// leaves every Shuffler closed.
func ExampleSafePanic() {
	s, _ := memshuffle.New()
	defer s.Close()
	h, _ := memshuffle.Random(s, 32)

	func() {
		defer func() { fmt.Println("recovered:", recover()) }()
		memshuffle.SafePanic("invariant broken")
	}()
	fmt.Println(s.Valid(h))
	// Output:
	// recovered: invariant broken
	// false
}

// SafeExit purges everything, then exits like os.Exit; use it in place of
// os.Exit and log.Fatal where secrets are held.
func ExampleSafeExit() {
	s, _ := memshuffle.New()
	defer s.Close()

	fatal := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		memshuffle.SafeExit(1)
	}
	if _, err := memshuffle.Random(s, 32); err != nil {
		fatal(err)
	}
	fmt.Println("running")
	// Output: running
}
