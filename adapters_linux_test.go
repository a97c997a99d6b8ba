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

// TestReadPrivateKeyWipesDEROnFailure: when the key parses but cannot be
// stored (here a closed Shuffler), the PKCS#8 DER ReadPrivateKey made to
// store is wiped as on success, as its doc promises. The DER exists
// nowhere else: the input is PEM, whose decoded block is wiped, and the
// test's own copy is wiped before the call. The collector is off, so
// freed memory is not reused and what was left stays to be found; the
// scan is first shown to find a planted copy.
func TestReadPrivateKeyWipesDEROnFailure(t *testing.T) {
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

	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := ReadPrivateKey(s, bytes.NewReader(in)); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadPrivateKey on a closed Shuffler: %v, want ErrClosed", err)
	}
	if n := len(scanSelf(t, p)); n != 0 {
		t.Errorf("%d copies of the key's PKCS#8 DER left after a failed ReadPrivateKey, want 0", n)
	}
}
