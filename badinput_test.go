package memshuffle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"testing"
)

// countingReader counts the calls to Read of the reader it wraps.
type countingReader struct {
	r     io.Reader
	calls int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.calls++
	return c.r.Read(p)
}

// TestReadersRefuseClosedUnread: every function that reads a secret from an
// io.Reader into a new entry answers ErrClosed for a Shuffler that is
// closed, purged or nil without reading anything, even input it could
// parse. ReadPrivateKey used to read and parse the key, copying it into
// the Go heap, and to fail only when storing it.
func TestReadersRefuseClosedUnread(t *testing.T) {
	der, err := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	closed, purged := newTest(t), newTest(t)
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	if err := purged.Purge(); err != nil {
		t.Fatal(err)
	}
	readers := map[string]func(*Shuffler, io.Reader) (Handle, error){
		"ReadAll":        func(s *Shuffler, r io.Reader) (Handle, error) { return ReadAll(s, r, 1<<10) },
		"ReadFrom":       func(s *Shuffler, r io.Reader) (Handle, error) { return ReadFrom(s, r, 16) },
		"ReadUntil":      func(s *Shuffler, r io.Reader) (Handle, error) { return ReadUntil(s, r, '\n', 1<<10) },
		"ReadPrivateKey": ReadPrivateKey,
	}
	for sname, s := range map[string]*Shuffler{"closed": closed, "purged": purged, "nil": nil} {
		for name, read := range readers {
			r := &countingReader{r: bytes.NewReader(key)}
			h, err := read(s, r)
			if !errors.Is(err, ErrClosed) || !h.IsZero() {
				t.Errorf("%s on a %s Shuffler: %v, %v; want ErrClosed", name, sname, h, err)
			}
			if r.calls != 0 {
				t.Errorf("%s on a %s Shuffler read its input (%d calls)", name, sname, r.calls)
			}
		}
	}
}

// TestAEADArgumentsBeforeLength: Open of a message too short to hold a tag
// still names the caller's mistake, a nil *AEAD or a nonce of the wrong
// size, as Seal does; it used to answer ErrAuthFailed, as for a forgery.
func TestAEADArgumentsBeforeLength(t *testing.T) {
	s := newTest(t)
	k, err := Random(s, 32)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAEAD(s, k)
	if err != nil {
		t.Fatal(err)
	}
	var nilAEAD *AEAD
	nonce := make([]byte, 12)
	dst := []byte("kept")
	for _, tc := range []struct {
		name  string
		a     *AEAD
		nonce []byte
		ct    []byte
		want  error
	}{
		{"nil AEAD, empty message", nilAEAD, nonce, nil, ErrNilArgument},
		{"nil AEAD, short message", nilAEAD, nonce, []byte{1, 2, 3}, ErrNilArgument},
		{"nil AEAD, bad nonce, short message", nilAEAD, nonce[:5], []byte{1}, ErrNilArgument},
		{"short nonce, short message", a, nonce[:5], []byte{1}, ErrInvalidSize},
		{"long nonce, empty message", a, make([]byte, 13), nil, ErrInvalidSize},
		{"short message", a, nonce, []byte{1}, ErrAuthFailed},
	} {
		got, err := tc.a.Open(dst, tc.nonce, tc.ct, nil)
		if !errors.Is(err, tc.want) {
			t.Errorf("Open, %s: %v, want %v", tc.name, err, tc.want)
		}
		if string(got) != "kept" {
			t.Errorf("Open, %s: dst became %q", tc.name, got)
		}
	}
	if _, err := nilAEAD.Seal(nil, nonce[:5], nil, nil); !errors.Is(err, ErrNilArgument) {
		t.Errorf("Seal of a nil *AEAD with a bad nonce: %v, want ErrNilArgument", err)
	}
}
