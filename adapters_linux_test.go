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
// test's own copy is wiped before the call.
func TestReadPrivateKeyWipesDEROnFailure(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der := pkcs8(t, ed)
	in := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	Wipe(ed)
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	importLeavesNoCopy(t, s, der, in, ErrClosed)
}

// TestReadPrivateKeyBadBase64LeavesNothing: a "PRIVATE KEY" PEM block
// whose base64 has one stray character after the key (a damaged file) is
// refused with ErrInvalidKey before anything decodes it: encoding/pem
// decoded the whole key into a buffer of its own and dropped it unwiped.
func TestReadPrivateKeyBadBase64LeavesNothing(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der := pkcs8(t, ed)
	in := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	i := bytes.Index(in, []byte("\n-----END"))
	in = slices.Insert(in, i, '!')
	Wipe(ed)
	importLeavesNoCopy(t, newTest(t), der, in, ErrInvalidKey)
}

// TestReadPrivateKeyRefusedKindLeavesNothing: an X25519 key in PKCS#8 (a
// key type NewSigner does not support) is refused with ErrInvalidKey
// before crypto/x509 parses it: it made copies on the Go heap that nothing
// wiped (3 of the scalar; encoding/asn1's are out of reach, and wipeKey
// has no case for *ecdh.PrivateKey). The DER is built by hand, on the heap
// (a stack copy would stay behind in an old stack when the goroutine's
// stack grows), so the test holds no copy of the scalar but the one it
// plants and wipes.
func TestReadPrivateKeyRefusedKindLeavesNothing(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	der := append([]byte{0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20}, make([]byte, 32)...)
	scalar := der[len(der)-32:]
	rand.Read(scalar)
	in := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	importLeavesNoCopy(t, newTest(t), scalar, in, ErrInvalidKey)
	Wipe(der)
}

// importLeavesNoCopy checks that ReadPrivateKey(s, in) fails with want
// and leaves no copy of secret, the caller's only other copy of the key
// material in in, which it wipes. The collector is off in the caller, so
// freed memory is not reused and what was left stays to be found; the scan
// is first shown to find a planted copy, then none before the call.
func importLeavesNoCopy(t *testing.T, s *Shuffler, secret, in []byte, want error) {
	t.Helper()
	p, err := memscan.NewPattern(secret)
	if err != nil {
		t.Fatal(err)
	}
	planted := slices.Clone(secret)
	Wipe(secret)
	if n := len(scanSelf(t, p)); n != 1 {
		t.Fatalf("control: %d copies of the planted secret found, want 1", n)
	}
	Wipe(planted)
	if n := len(scanSelf(t, p)); n != 0 {
		t.Fatalf("%d copies of the secret before ReadPrivateKey, want 0", n)
	}
	if _, err := ReadPrivateKey(s, bytes.NewReader(in)); !errors.Is(err, want) {
		t.Fatalf("ReadPrivateKey: %v, want %v", err, want)
	}
	if n := len(scanSelf(t, p)); n != 0 {
		t.Errorf("%d copies of the key left after the failed ReadPrivateKey, want 0", n)
	}
}
