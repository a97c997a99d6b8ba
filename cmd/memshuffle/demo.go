package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"os"
	"unsafe"

	"github.com/memshuffle/memshuffle"
	"github.com/memshuffle/memshuffle/internal/memscan"
)

const demoUsage = `Usage: memshuffle demo

Stores a freshly generated API token in a Shuffler and walks through its
life: rent, return, shuffle, key rotation, free. After each step it scans its
own memory (/proc/self/mem on Linux, ReadProcessMemory on Windows) for the
token and prints where it was found.
The token itself is never printed, so the output holds no copy of it.
`

// demoToken is the shape of the secret: a public prefix and random hex.
const demoPrefix = "sk-demo-"
const demoLen = 40

func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), demoUsage) }
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "memshuffle demo: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	d := &demo{out: stdout}
	if err := d.run(); err != nil {
		fmt.Fprintln(stderr, "memshuffle demo:", err)
		return 2
	}
	if d.failed {
		fmt.Fprintln(stdout, "\nSomething was found where it should not be: see above.")
		return 1
	}
	return 0
}

type demo struct {
	out    io.Writer
	s      *memshuffle.Shuffler
	pat    *memscan.Pattern
	failed bool
}

func (d *demo) printf(format string, a ...any) { fmt.Fprintf(d.out, format, a...) }

func (d *demo) run() error {
	s, err := memshuffle.New()
	if err != nil {
		return err
	}
	d.s = s
	defer s.Close()

	d.printf("1. New Shuffler: AES-256-CTR key and salt drawn from crypto/rand, arenas mapped outside the Go heap.\n")
	h, err := memshuffle.Alloc[byte](s, demoLen)
	if err != nil {
		return err
	}
	d.printf("2. Alloc[byte](s, %d) -> %v (an opaque handle, not a pointer)\n", demoLen, h)

	tok, err := memshuffle.RentSlice[byte](s, h)
	if err != nil {
		return err
	}
	// The token is generated inside the rented entry: it never exists
	// anywhere else.
	copy(tok, demoPrefix)
	if _, err := rand.Read(tok[len(demoPrefix):]); err != nil {
		return err
	}
	const hexdigits = "0123456789abcdef"
	for i := len(demoPrefix); i < len(tok); i++ {
		tok[i] = hexdigits[tok[i]&15]
	}
	d.pat, err = memscan.NewPattern(tok)
	if err != nil {
		return err
	}
	d.printf("3. RentSlice: the entry is decrypted in place at %#x; a %d-byte token %s... is written straight into it.\n",
		addr(tok), len(tok), demoPrefix)
	d.scan("   while rented", 1)

	if err := s.Return(h); err != nil {
		return err
	}
	d.printf("4. Return: encrypted again under a counter run never used before.\n")
	d.scan("   at rest", 0)

	before := d.where(h)
	for i := range 2 {
		if err := s.Shuffle(); err != nil {
			return err
		}
		after := d.where(h)
		d.printf("5.%d Shuffle: the entry moved from %#x to %#x; the old bytes were wiped.\n", i+1, before, after)
		before = after
	}
	d.scan("   after shuffles", 0)

	if err := s.RotateKey(nil, nil); err != nil {
		return err
	}
	d.printf("6. RotateKey: every entry re-encrypted under a new random key, without being decrypted.\n")
	tok, err = memshuffle.RentSlice[byte](s, h)
	if err != nil {
		return err
	}
	d.scan(fmt.Sprintf("   rented again at %#x", addr(tok)), 1)
	if err := s.Return(h); err != nil {
		return err
	}

	st := s.Stats()
	d.printf("7. Stats: %d entries, %d live bytes, %d arenas (%d bytes mapped, %d locked), %d shuffles moved %d bytes in %v, %d key rotation(s).\n",
		st.Entries, st.LiveBytes, st.Arenas, st.MappedBytes, st.LockedBytes, st.Shuffles, st.BytesMoved, st.ShuffleTime, st.KeyRotations)

	if err := s.Free(h); err != nil {
		return err
	}
	d.printf("8. Free: the entry is wiped; the handle is dead: Valid(h) = %v.\n", s.Valid(h))
	d.scan("   after free", 0)
	return s.Close()
}

// where reports the entry's address by renting it for a moment.
func (d *demo) where(h memshuffle.Handle) uintptr {
	b, err := memshuffle.RentSlice[byte](d.s, h)
	if err != nil {
		return 0
	}
	a := addr(b)
	_ = d.s.Return(h)
	return a
}

func addr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// scan searches the whole process for the token and prints each hit.
func (d *demo) scan(label string, want int) {
	hits, err := memscan.ScanProcess(os.Getpid(), d.pat)
	if err != nil {
		d.printf("%s: scan of own memory not possible here: %v\n", label, err)
		return
	}
	d.printf("%s: scan of all process memory finds the token %d time(s)\n", label, len(hits))
	for _, h := range hits {
		m := h.Mapping
		flags := ""
		if m.Locked {
			flags += " locked"
		}
		if m.DontDump {
			flags += " dontdump"
		}
		d.printf("     at %#x in %s %s [%#x-%#x]%s\n", h.Addr, m.Name(), m.Perms, m.Start, m.End, flags)
	}
	if len(hits) != want {
		d.failed = true
		d.printf("     expected %d\n", want)
	}
}
