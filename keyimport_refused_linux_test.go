package memshuffle

import (
	"bytes"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"runtime/debug"
	"slices"
	"testing"

	"github.com/memshuffle/memshuffle/internal/memscan"
)

// TestReadPrivateKeyRefusedKindLeavesNothing: an X25519 key in PKCS#8 (a
// key type NewSigner does not support) is refused with ErrInvalidKey
// before crypto/x509 parses it: it made copies on the Go heap that nothing
// wiped (3 of the scalar; encoding/asn1's are out of reach, and wipeKey
// has no case for *ecdh.PrivateKey). The DER is built by hand, so the test holds
// no copy of the scalar but the one it plants and wipes.
var refusedKeySink []byte

func TestReadPrivateKeyRefusedKindLeavesNothing(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	// On the heap (a stack copy would stay behind in an old stack when
	// the goroutine's stack grows).
	scalar := make([]byte, 32)
	refusedKeySink = scalar
	rand.Read(scalar)
	p, err := memscan.NewPattern(scalar)
	if err != nil {
		t.Fatal(err)
	}
	der := append([]byte{0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20}, scalar...)
	in := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	planted := slices.Clone(scalar)
	Wipe(der)
	Wipe(scalar)
	if n := len(scanSelf(t, p)); n != 1 {
		t.Fatalf("control: %d copies of the planted scalar found, want 1", n)
	}
	Wipe(planted)
	refusedKeySink = nil
	if n := len(scanSelf(t, p)); n != 0 {
		t.Fatalf("%d copies of the scalar before ReadPrivateKey, want 0", n)
	}
	s := newTest(t)
	if _, err := ReadPrivateKey(s, bytes.NewReader(in)); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("ReadPrivateKey of an X25519 key: %v, want ErrInvalidKey", err)
	}
	if n := len(scanSelf(t, p)); n != 0 {
		t.Errorf("%d copies of the X25519 private scalar left after ReadPrivateKey refused it, want 0", n)
	}
}
