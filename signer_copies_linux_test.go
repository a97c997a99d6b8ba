package memshuffle

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"io"
	"runtime"
	"testing"

	"github.com/memshuffle/memshuffle/internal/memscan"
	"github.com/memshuffle/memshuffle/internal/stackscrub"
	"github.com/memshuffle/memshuffle/internal/stacktest"
)

// TestNewSignerEd25519LeavesNoCopies: making Signers of an Ed25519 key
// leaves no copy of its seed, scalar or prefix anywhere in the process.
// crypto/x509's parse copied the seed to the heap, and returned the key
// it expanded from it there: 2 more copies of the seed with each
// NewSigner. The test makes the key and its patterns on a goroutine of
// its own, in frames zeroed after, so that its own copies are gone; the
// control is a planted copy of the seed, found.
func TestNewSignerEd25519LeavesNoCopies(t *testing.T) {
	if raceBuild {
		t.Skip("the race detector's instrumentation changes the frames the test zeroes")
	}
	s := newTest(t)
	m := madeEd25519Key(t, s)
	runtime.GC()
	before := stacktest.Count(t, m.ps, false)
	for range 20 {
		if _, err := NewSigner(s, m.h); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	if after := stacktest.Count(t, m.ps, true); after > before {
		t.Errorf("%d copies of the Ed25519 seed, scalar and prefix after 20 NewSigner calls, %d before", after, before)
	}
	m.control(t)
}

// ed25519Made is an Ed25519 key in an entry, the patterns of its seed,
// scalar and prefix, and its seed inverted, for the control.
type ed25519Made struct {
	h       Handle
	ps      []*memscan.Pattern
	invSeed [ed25519.SeedSize]byte
}

// madeEd25519Key makes an Ed25519 key in an entry of s on a goroutine of
// its own, in frames zeroed after, so that none of its copies are left.
func madeEd25519Key(t *testing.T, s *Shuffler) ed25519Made {
	t.Helper()
	return inScrubbedFrames(t, func() (m ed25519Made, err error) {
		m.h, m.ps, m.invSeed, err = ed25519KeyAndPatterns(s)
		return m, err
	})
}

// scrubbed runs f, whose frames hold a secret (a pattern's plaintext, the
// blocks of stacktest.GCMBlocks), and then zeroes the stack f used, all in
// stackscrub.Unshrinkable: a collection that shrank the stack meanwhile
// would free a copy of f's frames where no scrub reaches, and a scan would
// find the test's own secret there (internal/seal's
// TestGCMKeyNotLeftOnStack, which does the same, failed so once in CI).
func scrubbed(f func()) {
	stackscrub.Unshrinkable(true, func() {
		f()
		stackscrub.ScrubDeep()
	})
}

// inScrubbedFrames runs build, whose frames hold a key, on a goroutine of
// its own in scrubbed, so that no copy it made is left on a
// stack, and returns what it built; it fails t on build's error.
func inScrubbedFrames[T any](t *testing.T, build func() (T, error)) T {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	ch := make(chan result)
	go func() {
		var r result
		scrubbed(func() { r.v, r.err = build() })
		ch <- r
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}

// control plants a copy of the seed and checks that the scan finds it.
func (m *ed25519Made) control(t *testing.T) {
	t.Helper()
	planted := make([]byte, len(m.invSeed))
	for i, b := range m.invSeed {
		planted[i] = ^b
	}
	if n := stacktest.Count(t, m.ps[:1], false); n == 0 {
		t.Error("control: the planted seed was not found")
	}
	clear(planted)
	runtime.KeepAlive(planted)
}

// ed25519KeyAndPatterns makes an Ed25519 key in an entry of s, as PKCS#8,
// and returns patterns of its seed, of its clamped scalar's hash half and
// of its prefix, and the seed inverted. Its frames hold the key: call it
// in scrubbed (inScrubbedFrames).
//
//go:noinline
func ed25519KeyAndPatterns(s *Shuffler) (Handle, []*memscan.Pattern, [ed25519.SeedSize]byte, error) {
	var inv [ed25519.SeedSize]byte
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Handle{}, nil, inv, err
	}
	defer Wipe(ed)
	der, err := x509.MarshalPKCS8PrivateKey(ed)
	if err != nil {
		return Handle{}, nil, inv, err
	}
	defer Wipe(der)
	sum := sha512.Sum512(ed[:ed25519.SeedSize])
	defer Wipe(sum[:])
	var ps []*memscan.Pattern
	for _, b := range [][]byte{ed[:ed25519.SeedSize], sum[:32], sum[32:]} {
		p, err := memscan.NewPattern(b)
		if err != nil {
			return Handle{}, nil, inv, err
		}
		ps = append(ps, p)
	}
	for i, b := range ed[:ed25519.SeedSize] {
		inv[i] = ^b
	}
	h, err := CopyFrom(s, der)
	return h, ps, inv, err
}

// TestReadPrivateKeyEd25519LeavesNoCopies: reading an Ed25519 key with
// ReadPrivateKey, as DER and as PEM, leaves no copy of its seed, scalar
// or prefix anywhere in the process. crypto/x509's parse and marshal,
// which it used before, each copied the seed to the heap. The key reaches
// ReadPrivateKey through a pipe from an entry (WriteTo), so that the
// test holds no copy of its own; the control is a planted copy of the
// seed, found.
func TestReadPrivateKeyEd25519LeavesNoCopies(t *testing.T) {
	if raceBuild {
		t.Skip("the race detector's instrumentation changes the frames the test zeroes")
	}
	s := newTest(t)
	m := madeEd25519Key(t, s)
	// read pipes the entry to ReadPrivateKey, base64 in a PEM block or as
	// it is.
	read := func(asPEM bool) {
		t.Helper()
		pr, pw := io.Pipe()
		go func() {
			var err error
			if asPEM {
				io.WriteString(pw, "-----BEGIN PRIVATE KEY-----\n")
				enc := base64.NewEncoder(base64.StdEncoding, pw)
				_, err = WriteTo(s, m.h, enc)
				enc.Close()
				io.WriteString(pw, "\n-----END PRIVATE KEY-----\n")
			} else {
				_, err = WriteTo(s, m.h, pw)
			}
			pw.CloseWithError(err)
		}()
		h, err := ReadPrivateKey(s, pr)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := EqualEntries(s, h, m.h); err != nil || !ok {
			t.Fatalf("the entry ReadPrivateKey made differs from the key's PKCS#8 DER (%v)", err)
		}
		if err := s.Free(h); err != nil {
			t.Fatal(err)
		}
	}
	read(false) // the pipe's and the encoder's goroutines, first made here
	runtime.GC()
	before := stacktest.Count(t, m.ps, false)
	for i := range 20 {
		read(i%2 == 0)
	}
	runtime.GC()
	if after := stacktest.Count(t, m.ps, true); after > before {
		t.Errorf("%d copies of the Ed25519 seed, scalar and prefix after 20 ReadPrivateKey calls, %d before", after, before)
	}
	m.control(t)
}
