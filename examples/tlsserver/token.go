package main

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/memshuffle/memshuffle"
)

// The API token is a shared secret: a client proves it holds it by sending
// "Authorization: Bearer <token>". The server keeps its own copy, the one
// every request is checked against for the life of the process, in a
// Shuffler entry.

// maxTokenSize bounds a token read from a file or the environment.
const maxTokenSize = 4096

// tokenEnv is the environment variable the token may come from.
const tokenEnv = "API_TOKEN"

// loadToken puts the token into an entry, from the first source there is:
// the file named by -token-file, the API_TOKEN environment variable, or,
// for the demo, a fresh random token (generated reports that it is one, so
// the caller can show it once).
func loadToken(s *memshuffle.Shuffler, file string) (h memshuffle.Handle, generated bool, err error) {
	if file != "" {
		h, err = readTokenFile(s, file)
		return h, false, err
	}
	if v, ok := os.LookupEnv(tokenEnv); ok && v != "" {
		h, err = tokenFromEnv(s, v)
		return h, false, err
	}
	h, err = generateToken(s)
	return h, true, err
}

// readTokenFile is the way in to prefer: the file holds the token, with or
// without a trailing newline. ReadFrom reads from the *os.File straight into
// a rented entry, so no Go buffer ever holds the token. For standard input,
// name /dev/stdin and redirect a file to it (-token-file /dev/stdin <
// token.txt): the size is what tells ReadFrom how much to read, so a pipe,
// whose size is unknown, is refused.
func readTokenFile(s *memshuffle.Shuffler, file string) (memshuffle.Handle, error) {
	f, err := os.Open(file)
	if err != nil {
		return memshuffle.Handle{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return memshuffle.Handle{}, err
	}
	if !fi.Mode().IsRegular() {
		return memshuffle.Handle{}, fmt.Errorf("%s: not a regular file; the token is read by its size", file)
	}
	if fi.Size() < 1 || fi.Size() > maxTokenSize {
		return memshuffle.Handle{}, fmt.Errorf("%s: %d bytes; want 1 to %d", file, fi.Size(), maxTokenSize)
	}
	h, err := memshuffle.ReadFrom(s, f, int(fi.Size()))
	if err != nil {
		return memshuffle.Handle{}, fmt.Errorf("%s: %w", file, err)
	}
	h, err = trimNewline(s, h)
	if err != nil {
		return memshuffle.Handle{}, fmt.Errorf("%s: %w", file, err)
	}
	return h, nil
}

// trimNewline drops the "\n" or "\r\n" that echo and editors leave at the
// end of a file. An entry cannot shrink, so the token moves to a new entry
// of the right size: copied from one rented entry into the other, never
// through the heap, and the old entry is wiped by Free.
func trimNewline(s *memshuffle.Shuffler, h memshuffle.Handle) (memshuffle.Handle, error) {
	size, err := s.Size(h)
	if err != nil {
		return memshuffle.Handle{}, err
	}
	var n int
	err = memshuffle.BorrowViewSlice(s, h, func(b []byte) error {
		n = len(bytes.TrimRight(b, "\r\n")) // a sub-slice, not a copy
		return nil
	})
	if err == nil && n == size {
		return h, nil
	}
	defer s.Free(h)
	if err != nil {
		return memshuffle.Handle{}, err
	}
	if n == 0 {
		return memshuffle.Handle{}, errors.New("the token is empty")
	}
	t, err := memshuffle.Alloc[byte](s, n)
	if err != nil {
		return memshuffle.Handle{}, err
	}
	err = memshuffle.BorrowViewSlice(s, h, func(src []byte) error {
		return memshuffle.BorrowSlice(s, t, func(dst []byte) error {
			copy(dst, src)
			return nil
		})
	})
	if err != nil {
		s.Free(t)
		return memshuffle.Handle{}, err
	}
	return t, nil
}

// tokenFromEnv takes the token from the environment, the common way and the
// leaky one. v is a Go string: immutable, so it cannot be wiped, and it
// points into the copy of the environment the Go runtime made on the heap at
// start-up. The operating system's own copy, the environment block the
// process started with, stays too (it is what /proc/PID/environ shows). The
// []byte conversion is one more copy, but one that is wiped; Unsetenv
// keeps the variable from child processes started from now on, and drops
// the runtime's reference to its copy, which stays in memory, unwiped, until
// the garbage collector reuses it. See examples/readenv. Prefer -token-file.
func tokenFromEnv(s *memshuffle.Shuffler, v string) (memshuffle.Handle, error) {
	if len(v) > maxTokenSize {
		os.Unsetenv(tokenEnv)
		return memshuffle.Handle{}, fmt.Errorf("$%s: %d bytes; want at most %d", tokenEnv, len(v), maxTokenSize)
	}
	b := []byte(v)
	h, err := memshuffle.CopyFrom(s, b)
	if err != nil {
		memshuffle.Wipe(b) // CopyFrom wipes its src only once the entry holds it
	}
	if uerr := os.Unsetenv(tokenEnv); err == nil {
		err = uerr
	}
	return h, err
}

// tokenLen is the length of a generated token: 64 hex digits, 256 bits.
const tokenLen = 64

// generateToken makes a random token of hex digits straight in an entry:
// random bytes are written into it, then each byte is turned, in place, into
// the hex digit of its low four bits. No other copy is made.
func generateToken(s *memshuffle.Shuffler) (memshuffle.Handle, error) {
	const digits = "0123456789abcdef"
	h, err := memshuffle.Alloc[byte](s, tokenLen)
	if err != nil {
		return memshuffle.Handle{}, err
	}
	err = memshuffle.BorrowSlice(s, h, func(tok []byte) error {
		if _, err := rand.Read(tok); err != nil {
			return err
		}
		for i, c := range tok {
			tok[i] = digits[c&0x0f]
		}
		return nil
	})
	if err != nil {
		s.Free(h)
		return memshuffle.Handle{}, err
	}
	return h, nil
}

// authorized reports whether r carries the token. The error is the
// Shuffler's (ErrClosed once it has been purged or closed), not the
// client's.
//
// The token the client sends is outside memshuffle's reach: it arrives in
// net/http's read buffer and in the request's header map, as Go strings on
// the heap, for every request, right or wrong. The Shuffler protects the
// server's reference copy, which is what a memory dump of an idle server
// would otherwise always contain.
func (srv *server) authorized(r *http.Request) (bool, error) {
	scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || got == "" {
		return false, nil
	}
	presented := []byte(got)
	defer memshuffle.Wipe(presented) // this copy at least is ours to wipe
	var match bool
	// A shared view: many requests check the token at once without waiting
	// for each other. The entry is decrypted by the first viewer and
	// encrypted again by the last, so under steady load it may stay
	// plaintext for as long as requests overlap; it is ciphertext whenever
	// no request is being checked.
	err := srv.vault.view(srv.token, func(tok []byte) error {
		// ConstantTimeCompare takes as long whichever byte differs, so the
		// timing of a wrong guess tells nothing about the token's bytes. It
		// does return at once when the lengths differ: the length is not
		// treated as secret.
		match = subtle.ConstantTimeCompare(presented, tok) == 1
		return nil
	})
	if err != nil {
		return false, err
	}
	return match, nil
}
