package memshuffle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"runtime/debug"
	"slices"
	"testing"

	"github.com/memshuffle/memshuffle/internal/memscan"
)

// TestReadPrivateKeyBadBase64LeavesNothing: a "PRIVATE KEY" PEM block
// whose base64 has one stray character after the key (a damaged file) is
// refused with ErrInvalidKey, but encoding/pem has already decoded the
// whole key into a buffer of its own, which it drops unwiped: the key's
// DER stays on the Go heap. Same method as TestReadPrivateKeyWipesDEROnFailure.
func TestReadPrivateKeyBadBase64LeavesNothing(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der := pkcs8(t, ed)
	p, err := memscan.NewPattern(der)
	if err != nil {
		t.Fatal(err)
	}
	in := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	// One stray character at the end of the base64 body.
	i := bytes.Index(in, []byte("\n-----END"))
	in = slices.Insert(in, i, '!')
	planted := slices.Clone(der)
	Wipe(der)
	Wipe(ed)
	if n := len(scanSelf(t, p)); n != 1 {
		t.Fatalf("control: %d copies of the planted DER found, want 1", n)
	}
	Wipe(planted)
	if n := len(scanSelf(t, p)); n != 0 {
		t.Fatalf("%d copies of the DER before ReadPrivateKey, want 0", n)
	}
	s := newTest(t)
	if _, err := ReadPrivateKey(s, bytes.NewReader(in)); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("ReadPrivateKey of damaged PEM: %v, want ErrInvalidKey", err)
	}
	if n := len(scanSelf(t, p)); n != 0 {
		t.Errorf("%d copies of the key's PKCS#8 DER left on the heap after ReadPrivateKey refused damaged PEM, want 0", n)
	}
}
