//go:build review

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

// reviewChildEnv names the test a child process of the review tests runs.
const reviewChildEnv = "MEMSHUFFLE_REVIEW_CHILD"

// inChild runs body in a child process (a fresh run of this test binary
// limited to t's test) and fails t if the child dies of a fault instead of
// finishing.
func inChild(t *testing.T, body func(t *testing.T)) {
	t.Helper()
	if os.Getenv(reviewChildEnv) == t.Name() {
		body(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), reviewChildEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		s := string(out)
		if i := strings.Index(s, "unexpected fault address"); i >= 0 {
			s = s[i:min(len(s), i+300)]
		} else {
			s = s[max(0, len(s)-1500):]
		}
		t.Fatalf("child process failed (%v):\n%s", err, s)
	}
}

// reviewNew makes a plain Shuffler closed at the end of the test.
func reviewNew(t *testing.T, opts ...Option) *Shuffler {
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

// TestReviewReadAllCloseFaults: ReadAll rents its buffer entry unpinned
// (rentNew uses RentSlice), so a Close while the reader is blocked unmaps
// the memory the reader then writes into: the process dies with
// "unexpected fault address" (SIGSEGV), unrecoverable. ReadFrom, the With
// functions and the other fills pin and survive the same sequence.
func TestReviewReadAllCloseFaults(t *testing.T) {
	inChild(t, func(t *testing.T) {
		s, err := New()
		if err != nil {
			t.Fatal(err)
		}
		r := &blockingReader{make(chan struct{}), make(chan struct{}), []byte("secret"), false}
		errc := make(chan error, 1)
		go func() {
			_, err := ReadAll(s, r, 1<<10)
			errc <- err
		}()
		<-r.started
		s.Close()
		close(r.release)
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("ReadAll after Close: %v, want ErrClosed", err)
		}
	})
}

// TestReviewReadUntilCloseFaults: as ReadAll, ReadUntil reads into an
// unpinned rent; Close during the read makes the one-byte write fault.
func TestReviewReadUntilCloseFaults(t *testing.T) {
	inChild(t, func(t *testing.T) {
		s, err := New()
		if err != nil {
			t.Fatal(err)
		}
		r := &blockingReader{make(chan struct{}), make(chan struct{}), []byte("s"), false}
		errc := make(chan error, 1)
		go func() {
			_, err := ReadUntil(s, r, '\n', 1<<10)
			errc <- err
		}()
		<-r.started
		s.Close()
		close(r.release)
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("ReadUntil after Close: %v, want ErrClosed", err)
		}
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

// TestReviewWriteToCloseFaults: WriteTo views the entry unpinned
// (ViewSlice), so a Close during w.Write unmaps the bytes w is reading:
// the process dies with "unexpected fault address".
func TestReviewWriteToCloseFaults(t *testing.T) {
	inChild(t, func(t *testing.T) {
		s, err := New()
		if err != nil {
			t.Fatal(err)
		}
		h, err := CopyFrom(s, []byte("secret"))
		if err != nil {
			t.Fatal(err)
		}
		w := &blockingWriter{started: make(chan struct{}), release: make(chan struct{})}
		errc := make(chan error, 1)
		go func() {
			_, err := WriteTo(s, h, w)
			errc <- err
		}()
		<-w.started
		s.Close()
		close(w.release)
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("WriteTo after Close: %v, want ErrClosed", err)
		}
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
		for _, a := range sh.arenas {
			if a != nil && bytes.Contains(a.mem, b) {
				sh.mu.Unlock()
				return true
			}
		}
		sh.mu.Unlock()
	}
	return false
}

// TestReviewReadAllPurgeLeavesPlaintext: when the reader's last Read fills
// the entry exactly and returns io.EOF after a Purge, growing.finish clears
// g.b before Return fails with ErrClosed, so the deferred discard finds
// nothing to wipe: the plaintext stays in the purged (still mapped) arena
// until Close. Purge promises "nothing written survives" for the fills.
func TestReviewReadAllPurgeLeavesPlaintext(t *testing.T) {
	s := reviewNew(t)
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

// keyReader is an io.Reader for ReadPrivateKey that misbehaves as read
// says.
type keyReader func(p []byte) (int, error)

func (f keyReader) Read(p []byte) (int, error) { return f(p) }

// TestReviewReadAllPanicIsErrPanicked: a reader that panics in ReadAll or
// ReadUntil gives "memshuffle: reader panicked: ..." from panicError, which
// does not wrap ErrPanicked; ReadFrom's does. Callers cannot tell a
// reader's panic from its error with errors.Is.
func TestReviewReadAllPanicIsErrPanicked(t *testing.T) {
	s := reviewNew(t)
	boom := keyReader(func(p []byte) (int, error) { panic("reader bug") })
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

// TestReviewCloseRacesUnpinnedCalls: ReadAll, ReadUntil and WriteTo in
// loops, from two goroutines each, with Close at a random moment,
// GOMAXPROCS=8 and runtime.GC in a loop: the child process dies with
// "unexpected fault address" where the pinned calls (the control,
// TestReviewControlCloseRacesPinnedCalls) finish.
func TestReviewCloseRacesUnpinnedCalls(t *testing.T) {
	inChild(t, func(t *testing.T) {
		stressEnd(t, reviewUnpinnedOps, 50, func(s *Shuffler) { s.Close() }, func(*Shuffler) {})
	})
}

// TestReviewPurgeRacesUnpinnedCalls: the same with Purge; what ReadAll's
// reader wrote after the Purge survives in the purged arenas whenever the
// last read filled the entry (see TestReviewReadAllPurgeLeavesPlaintext).
func TestReviewPurgeRacesUnpinnedCalls(t *testing.T) {
	stressEnd(t, reviewUnpinnedOps, 50, func(s *Shuffler) { s.Purge() }, func(s *Shuffler) {
		if arenasHold(s, reviewPattern[:32]) {
			t.Error("plaintext left after Purge")
		}
	})
}

// TestReviewAdaptersRacePurge: the crypto adapters racing Purge see the
// key entry wiped under them, and call() returns fn's error ahead of
// endPinned's ErrClosed. So Sign fails with ErrInvalidKey ("the entry
// holds another Ed25519 key than the Signer was made for") or with
// crypto/ecdsa's bare "private key scalar is zero or negative", which
// matches no sentinel of the package, and AEAD.Open of an authentic
// message fails with ErrAuthFailed (opened under the wiped, all-zero
// key), instead of ErrClosed. A caller that alerts on forged messages or
// replaced keys gets a false alarm; one that checks ErrClosed misses the
// shutdown.
func TestReviewAdaptersRacePurge(t *testing.T) {
	stressEnd(t, reviewAdapterOps, 20, func(s *Shuffler) { s.Purge() }, func(*Shuffler) {})
}

// TestReviewBadCountSentinel: a reader or writer returning an impossible
// count (negative, or more than len(p)) gets "memshuffle: reader returned
// %d for a %d-byte read" / "writer returned ...", made with fmt.Errorf and
// no %w: it matches no sentinel, against the rule that every error is
// usable with errors.Is. io.ErrShortWrite (writer) or a new sentinel would
// let callers tell a broken peer from a closed Shuffler.
func TestReviewBadCountSentinel(t *testing.T) {
	s := reviewNew(t)
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
	_, werr := WriteTo(s, h, reviewWriter(func(p []byte) (int, error) { return len(p) + 1, nil }))
	_, rerr := ReadAll(s, keyReader(func(p []byte) (int, error) { return -1, nil }), 10)
	for name, err := range map[string]error{"WriteTo": werr, "ReadAll": rerr} {
		if err == nil || !typed(err) {
			t.Errorf("%s: %v matches no sentinel", name, err)
		}
	}
}

type reviewWriter func(p []byte) (int, error)

func (f reviewWriter) Write(p []byte) (int, error) { return f(p) }
