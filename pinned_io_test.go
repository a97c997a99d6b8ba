package memshuffle

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// childTestEnv names the test a child process started by inChild runs.
const childTestEnv = "MEMSHUFFLE_CHILD_TEST"

// inChild runs body in a child process (a fresh run of this test binary
// limited to t's test) and fails t if the child dies of a fault instead of
// finishing.
func inChild(t *testing.T, body func(t *testing.T)) {
	t.Helper()
	inChildEnv(t, nil, body)
}

// inChildEnv is inChild with env added to the child's environment; a
// GODEBUG setting there is added to the test's own GODEBUG.
func inChildEnv(t *testing.T, env []string, body func(t *testing.T)) {
	t.Helper()
	if os.Getenv(childTestEnv) == t.Name() {
		body(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childTestEnv+"="+t.Name())
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok && os.Getenv("GODEBUG") != "" {
			kv = "GODEBUG=" + os.Getenv("GODEBUG") + "," + v
		}
		cmd.Env = append(cmd.Env, kv)
	}
	out, err := cmd.CombinedOutput()
	if err != nil && (strings.Contains(string(out), "panic: fips140: FIPS 140-3 mode is incompatible") ||
		strings.Contains(string(out), "panic: fips140: FIPS 140-3 mode is not supported")) {
		// GODEBUG=fips140=only where the Go FIPS module cannot run
		// (openbsd, aix, windows/386, purego or asan builds): it panics
		// at start-up.
		t.Skipf("the FIPS 140 mode cannot run in this build:\n%s", out)
	}
	if err != nil {
		s := string(out)
		if i := strings.Index(s, "unexpected fault address"); i >= 0 {
			s = s[i:min(len(s), i+300)]
		} else {
			s = s[max(0, len(s)-1500):]
		}
		t.Fatalf("child process failed (%v):\n%s", err, s)
	}
	// A child that ran nothing exits 0 too.
	switch {
	case strings.Contains(string(out), "--- PASS: "+t.Name()):
	case strings.Contains(string(out), "--- SKIP: "+t.Name()):
		t.Skipf("skipped in the child process:\n%s", out)
	default:
		t.Fatalf("the child process did not run %s:\n%s", t.Name(), out)
	}
}

// newUnchecked makes a Shuffler closed at the end of the test, without the
// invariant check of newTest, for tests that purge it.
func newUnchecked(t *testing.T, opts ...Option) *Shuffler {
	t.Helper()
	s, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// blockingReader hands out secret in its first Read only after release is
// closed, writing into the slice it was given, as a network read that
// completes after a Close elsewhere does.
type blockingReader struct {
	started chan struct{}
	release chan struct{}
	secret  []byte
	done    bool
}

func (r *blockingReader) Read(p []byte) (int, error) {
	if r.done {
		return 0, io.EOF
	}
	r.done = true
	close(r.started)
	<-r.release
	return copy(p, r.secret), nil
}

// closeWhileBlocked runs, in a child process since a fault cannot be
// recovered, the call op that setup prepares on a new Shuffler, closes the
// Shuffler once the call is blocked in its reader or writer (started),
// lets it go on (release), and requires it to return ErrClosed.
func closeWhileBlocked(t *testing.T, what string, setup func(t *testing.T, s *Shuffler) (started, release chan struct{}, op func() error)) {
	inChild(t, func(t *testing.T) {
		s, err := New()
		if err != nil {
			t.Fatal(err)
		}
		started, release, op := setup(t, s)
		errc := make(chan error, 1)
		go func() { errc <- op() }()
		<-started
		s.Close()
		close(release)
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("%s after Close: %v, want ErrClosed", what, err)
		}
	})
}

func newBlockingReader(secret string) *blockingReader {
	return &blockingReader{make(chan struct{}), make(chan struct{}), []byte(secret), false}
}

// TestReadAllCloseNoFault: a Close while ReadAll's reader is blocked leaves
// the entry it writes into mapped (the rent is pinned), so the write after
// Close does not fault the process and ReadAll returns ErrClosed. Run in a
// child process, since a fault cannot be recovered.
func TestReadAllCloseNoFault(t *testing.T) {
	closeWhileBlocked(t, "ReadAll", func(t *testing.T, s *Shuffler) (started, release chan struct{}, op func() error) {
		r := newBlockingReader("secret")
		return r.started, r.release, func() error { _, err := ReadAll(s, r, 1<<10); return err }
	})
}

// TestReadUntilCloseNoFault is TestReadAllCloseNoFault for ReadUntil's
// one-byte reads.
func TestReadUntilCloseNoFault(t *testing.T) {
	closeWhileBlocked(t, "ReadUntil", func(t *testing.T, s *Shuffler) (started, release chan struct{}, op func() error) {
		r := newBlockingReader("s")
		return r.started, r.release, func() error { _, err := ReadUntil(s, r, '\n', 1<<10); return err }
	})
}

// blockingWriter reads the slice it is given only after release is
// closed, as a socket write that copies once buffer space frees up.
type blockingWriter struct {
	started chan struct{}
	release chan struct{}
	got     []byte
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	close(w.started)
	<-w.release
	w.got = append(w.got, p...)
	return len(p), nil
}

// TestWriteToCloseNoFault: a Close during w.Write leaves the bytes w reads
// mapped (the view is pinned), and WriteTo returns ErrClosed.
func TestWriteToCloseNoFault(t *testing.T) {
	closeWhileBlocked(t, "WriteTo", func(t *testing.T, s *Shuffler) (started, release chan struct{}, op func() error) {
		h, err := CopyFrom(s, []byte("secret"))
		if err != nil {
			t.Fatal(err)
		}
		w := &blockingWriter{started: make(chan struct{}), release: make(chan struct{})}
		return w.started, w.release, func() error { _, err := WriteTo(s, h, w); return err }
	})
}

// purgingReader yields its secret together with io.EOF in one Read, after
// purging s: a reader whose last read completes while a signal handler
// purges.
type purgingReader struct {
	s      *Shuffler
	secret []byte
	done   bool
}

func (r *purgingReader) Read(p []byte) (int, error) {
	if r.done {
		return 0, io.EOF
	}
	r.done = true
	r.s.Purge()
	return copy(p, r.secret), io.EOF
}

// arenasHold reports whether any arena of s still mapped holds b.
func arenasHold(s *Shuffler, b []byte) bool {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, a := range sh.Arenas.List() {
			if a != nil && bytes.Contains(a.Mem, b) {
				sh.mu.Unlock()
				return true
			}
		}
		sh.mu.Unlock()
	}
	return false
}

// TestReadAllPurgeWipes: a reader whose last Read fills the entry exactly
// and returns io.EOF after a Purge leaves nothing in the purged (still
// mapped) arenas: the end of the pinned rent wipes what it wrote.
func TestReadAllPurgeWipes(t *testing.T) {
	s := newUnchecked(t)
	secret := []byte("purge-must-wipe-this-0123456789-purge-must-wipe-this-0123456789!") // 64 bytes: readStart
	if len(secret) != readStart {
		t.Fatalf("secret is %d bytes, want %d", len(secret), readStart)
	}
	_, err := ReadAll(s, &purgingReader{s: s, secret: bytes.Clone(secret)}, 1<<10)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadAll: %v, want ErrClosed", err)
	}
	if arenasHold(s, secret) {
		t.Fatal("the purged Shuffler's memory still holds what the reader wrote")
	}
}

// TestReadPanicIsErrPanicked: a reader that panics gives an error wrapping
// ErrPanicked in ReadAll and ReadUntil, as in ReadFrom.
func TestReadPanicIsErrPanicked(t *testing.T) {
	s := newUnchecked(t)
	boom := readerFunc(func(p []byte) (int, error) { panic("reader bug") })
	if _, err := ReadAll(s, boom, 10); !errors.Is(err, ErrPanicked) {
		t.Errorf("ReadAll: %v, want ErrPanicked", err)
	}
	if _, err := ReadUntil(s, boom, '\n', 10); !errors.Is(err, ErrPanicked) {
		t.Errorf("ReadUntil: %v, want ErrPanicked", err)
	}
	if _, err := ReadFrom(s, boom, 10); !errors.Is(err, ErrPanicked) {
		t.Errorf("ReadFrom: %v, want ErrPanicked", err)
	}
}

// TestCloseRacesReadWriteCalls: ReadAll, ReadUntil and WriteTo in loops,
// from two goroutines each, with Close at a random moment, GOMAXPROCS=8
// and runtime.GC in a loop: every call ends with an error stressEnd allows
// and the child process does not fault.
func TestCloseRacesReadWriteCalls(t *testing.T) {
	inChild(t, func(t *testing.T) {
		stressEnd(t, readWriteOps, 50, func(s *Shuffler) { s.Close() }, func(*Shuffler) {})
	})
}

// TestPurgeRacesReadWriteCalls: the same with Purge, after which no purged
// arena holds what the readers wrote.
func TestPurgeRacesReadWriteCalls(t *testing.T) {
	stressEnd(t, readWriteOps, 50, func(s *Shuffler) { s.Purge() }, func(s *Shuffler) {
		if arenasHold(s, racePattern[:32]) {
			t.Error("plaintext left after Purge")
		}
	})
}

// TestAdaptersRacePurge: the crypto adapters racing Purge see their key
// entry wiped under them; they must report ErrClosed, not what their
// callback computed from the zeros (ErrInvalidKey from Sign, ErrAuthFailed
// from AEAD.Open of an authentic message, a bare crypto/ecdsa error): a
// caller would take those for a replaced key or a forgery.
func TestAdaptersRacePurge(t *testing.T) {
	stressEnd(t, adapterOps, 20, func(s *Shuffler) { s.Purge() }, func(*Shuffler) {})
}

// TestInvalidCountSentinel: a reader or writer returning an impossible
// count (negative, or more than len(p)) gets an error that matches a
// sentinel, ErrInvalidCount, so callers can tell a broken peer from a
// closed Shuffler.
func TestInvalidCountSentinel(t *testing.T) {
	s := newUnchecked(t)
	h, err := CopyFrom(s, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	sentinels := []error{ErrInvalidHandle, ErrBusy, ErrExpired, ErrTampered, ErrNotRented, ErrClosed,
		ErrUnsupportedType, ErrTypeMismatch, ErrInvalidSize, ErrOutOfMemory, ErrLockFailed, ErrNoSecretMemory,
		ErrInvalidOption, ErrNilArgument, ErrTooLarge, ErrCounterExhausted, ErrRotationIncomplete, ErrPanicked,
		ErrInvalidKey, ErrAuthFailed, ErrBufferOverlap, ErrInvalidCount, io.ErrShortWrite, io.ErrNoProgress, io.ErrUnexpectedEOF}
	typed := func(err error) bool {
		for _, e := range sentinels {
			if errors.Is(err, e) {
				return true
			}
		}
		return false
	}
	_, werr := WriteTo(s, h, writeFunc(func(p []byte) (int, error) { return len(p) + 1, nil }))
	_, rerr := ReadAll(s, readerFunc(func(p []byte) (int, error) { return -1, nil }), 10)
	for name, err := range map[string]error{"WriteTo": werr, "ReadAll": rerr} {
		if err == nil || !typed(err) {
			t.Errorf("%s: %v matches no sentinel", name, err)
		}
		if !errors.Is(err, ErrInvalidCount) {
			t.Errorf("%s: %v, want ErrInvalidCount", name, err)
		}
	}
}

// TestReadFromCloseNoFault is TestReadAllCloseNoFault for ReadFrom, whose
// rent was pinned first: the other Close tests' control.
func TestReadFromCloseNoFault(t *testing.T) {
	closeWhileBlocked(t, "ReadFrom", func(t *testing.T, s *Shuffler) (started, release chan struct{}, op func() error) {
		r := newBlockingReader("secret")
		return r.started, r.release, func() error { _, err := ReadFrom(s, r, 6); return err }
	})
}

// TestReadFromPurgeWipes is TestReadAllPurgeWipes for ReadFrom, and shows
// that arenasHold finds a copy planted in a purged arena.
func TestReadFromPurgeWipes(t *testing.T) {
	s := newUnchecked(t)
	secret := bytes.Repeat([]byte("x1y2"), 16)
	_, err := ReadFrom(s, &purgingReader{s: s, secret: bytes.Clone(secret)}, 64)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadFrom: %v, want ErrClosed", err)
	}
	if arenasHold(s, secret) {
		t.Fatal("the purged Shuffler's memory still holds what the reader wrote")
	}
	// Planted: the scan finds a secret written into a purged arena.
	s2 := newUnchecked(t)
	h, _ := Alloc[byte](s2, 64)
	b, _ := RentSlice[byte](s2, h)
	s2.Purge()
	copy(b, secret)
	if !arenasHold(s2, secret) {
		t.Fatal("scan misses a planted copy")
	}
}

// TestReadAllClosedWinsOverReader: a reader that calls Purge or Close and
// then fails (an error, a panic, or io.EOF with nothing read) makes
// ReadAll and ReadUntil return ErrClosed, as ReadFrom does and as their
// docs say: the reader's own error would hide that the Shuffler went, and
// an "empty input" would tell the caller there was nothing to read. They
// returned the reader's error, ErrPanicked or ErrInvalidSize.
func TestReadAllClosedWinsOverReader(t *testing.T) {
	errNet := errors.New("connection reset")
	endings := []struct {
		name string
		end  func(p []byte) (int, error)
	}{
		{"error", func(p []byte) (int, error) { return 0, errNet }},
		{"partial then error", func(p []byte) (int, error) { return copy(p, "partial"), errNet }},
		{"panic", func(p []byte) (int, error) { panic("reader broke") }},
		{"eof", func(p []byte) (int, error) { return 0, io.EOF }},
	}
	calls := []struct {
		name string
		read func(s *Shuffler, r io.Reader) error
	}{
		{"ReadFrom", func(s *Shuffler, r io.Reader) error { _, err := ReadFrom(s, r, 16); return err }},
		{"ReadAll", func(s *Shuffler, r io.Reader) error { _, err := ReadAll(s, r, 16); return err }},
		{"ReadUntil", func(s *Shuffler, r io.Reader) error { _, err := ReadUntil(s, r, '\n', 16); return err }},
	}
	for _, gone := range []string{"Purge", "Close"} {
		for _, c := range calls {
			for _, e := range endings {
				t.Run(gone+"/"+c.name+"/"+e.name, func(t *testing.T) {
					s := newUnchecked(t)
					r := readerFunc(func(p []byte) (int, error) {
						if gone == "Purge" {
							s.Purge()
						} else {
							s.Close()
						}
						return e.end(p)
					})
					if err := c.read(s, r); !errors.Is(err, ErrClosed) {
						t.Errorf("%v, want ErrClosed", err)
					}
				})
			}
		}
	}
}
