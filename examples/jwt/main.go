// Command jwt issues and verifies HS256 JSON Web Tokens (RFC 7519) with an
// HMAC key kept in a memshuffle Shuffler. The key is read from a file
// straight into the Shuffler, and each token is signed and checked with
// memshuffle.MAC, which leaves no copy of the key or of its padded blocks
// behind. It is meant to be copied from; README.md says what it protects,
// with the copies measured.
//
// Usage:
//
//	go run ./examples/jwt newkey FILE            write a new 32-byte key to FILE (mode 0600)
//	go run ./examples/jwt issue -key FILE -sub NAME [-ttl 1h]
//	go run ./examples/jwt verify -key FILE TOKEN
//
// issue prints the token; verify prints the claims as JSON, or fails with
// exit status 1 for a token that is malformed, not HS256, wrongly signed
// or expired.
package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/memshuffle/memshuffle"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr, time.Now); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "jwt:", err)
		}
		os.Exit(1)
	}
}

const usage = "usage: jwt newkey FILE | jwt issue -key FILE -sub NAME [-ttl D] | jwt verify -key FILE TOKEN"

func run(args []string, stdout, stderr io.Writer, now func() time.Time) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	s, err := memshuffle.New()
	if err != nil {
		return err
	}
	defer s.Close()
	cmd, args := args[0], args[1:]
	if cmd == "newkey" {
		if len(args) != 1 {
			return errors.New(usage)
		}
		return newKey(s, args[0])
	}
	fs := flag.NewFlagSet("jwt "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyFile := fs.String("key", "", "the HMAC key: a `file` of 32 to 1024 raw bytes")
	sub := fs.String("sub", "", "subject of the token (issue)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token, positive (issue)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *keyFile == "" {
		return errors.New("-key is required")
	}
	// A lifetime of zero or less makes a token verify refuses at once, or,
	// where exp lands on the Unix epoch, one without exp (omitempty) that
	// never expires.
	if cmd == "issue" && *ttl <= 0 {
		return fmt.Errorf("-ttl %v: want a positive duration", *ttl)
	}
	key, err := loadKey(s, *keyFile)
	if err != nil {
		return err
	}
	j := &hs256{s: s, key: key, now: now}
	switch {
	case cmd == "issue" && fs.NArg() == 0 && *sub != "":
		t := now()
		tok, err := j.issue(claims{Sub: *sub, Iat: t.Unix(), Exp: t.Add(*ttl).Unix()})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, tok)
		return err
	case cmd == "verify" && fs.NArg() == 1:
		c, err := j.verify(fs.Arg(0))
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(c)
	}
	return errors.New(usage)
}

// newKey generates a 32-byte key in a rented entry and writes it from
// there to a new file, which it refuses to overwrite.
func newKey(s *memshuffle.Shuffler, file string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	h, err := memshuffle.Alloc[byte](s, minKeySize)
	if err != nil {
		f.Close()
		return err
	}
	defer s.Free(h)
	err = memshuffle.BorrowSlice(s, h, func(key []byte) error {
		if _, err := rand.Read(key); err != nil {
			return err
		}
		_, err := f.Write(key) // from the entry to the kernel, no Go buffer
		return err
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(file)
	}
	return err
}
