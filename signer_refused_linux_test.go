package memshuffle

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"runtime/debug"
	"testing"

	"github.com/memshuffle/memshuffle/internal/memscan"
)

// TestNewSignerRefusedKindLeavesNothing is TestReadPrivateKeyRefusedKindLeavesNothing
// for NewSigner: an entry holding an X25519 key in PKCS#8 (put there with
// CopyFrom or ReadFrom, as NewSigner's doc allows any PKCS#8 DER) is
// refused with ErrInvalidKey, but only after crypto/x509 parsed it, which
// copies the scalar to the Go heap (encoding/asn1's copy of the OCTET
// STRINGs, crypto/ecdh's key) where nothing wipes it: wipeKey has no case
// for *ecdh.PrivateKey. As in the ReadPrivateKey test, the collector is
// off so that freed memory is not reused before the scan; in a busy
// process the copies last until their memory is reused (a gcore dump of
// a helper that called NewSigner once on such an entry held 3).
func TestNewSignerRefusedKindLeavesNothing(t *testing.T) {
	skipScanUnderRace(t)
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	s := newTest(t)
	der := append([]byte{0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20}, make([]byte, 32)...)
	scalar := der[len(der)-32:]
	rand.Read(scalar)
	p, err := memscan.NewPattern(scalar)
	if err != nil {
		t.Fatal(err)
	}
	planted := plant(scalar)   // the control's copy, on the heap
	h, err := CopyFrom(s, der) // wipes der
	if err != nil {
		t.Fatal(err)
	}
	if n := len(scanSelf(t, p)); n != 1 {
		t.Fatalf("control: %d copies of the planted scalar found, want 1", n)
	}
	Wipe(planted)
	if n := len(scanSelf(t, p)); n != 0 {
		t.Fatalf("%d copies of the scalar before NewSigner, want 0", n)
	}
	if _, err := NewSigner(s, h); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("NewSigner: %v, want ErrInvalidKey", err)
	}
	if n := len(scanSelf(t, p)); n != 0 {
		t.Errorf("%d copies of the X25519 scalar left after the refused NewSigner, want 0", n)
	}
}

// TestNewSignerSEC1LeavesNothing: an entry holding an EC key in SEC 1 form
// ("EC PRIVATE KEY", not PKCS#8) is refused by NewSigner with
// ErrInvalidKey, after crypto/x509's PKCS#8 parser, failing, parsed it as
// SEC 1 to word its error ("use ParseECPrivateKey instead"), leaving the
// scalar on the heap, unwiped: what ReadPrivateKey's derForm check keeps
// crypto/x509 from doing there (SECURITY.md, "A key file that is not what
// its label says").
func TestNewSignerSEC1LeavesNothing(t *testing.T) {
	skipScanUnderRace(t)
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	s := newTest(t)
	// SEC 1's ECPrivateKey for P-256 (version, scalar, the curve's OID; the
	// public key is optional), built by hand so that the scalar has no
	// copy on the heap but the control's. That crypto/x509 takes the form
	// is checked with another scalar: parsing copies it.
	sec1 := func(scalar []byte) []byte {
		der := append([]byte{0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20}, scalar...)
		return append(der, 0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07)
	}
	if _, err := x509.ParseECPrivateKey(sec1(bytes.Repeat([]byte{1}, 32))); err != nil {
		t.Fatalf("the hand-built SEC 1 form does not parse: %v", err)
	}
	der := sec1(make([]byte, 32))
	scalar := der[7:39]
	rand.Read(scalar)
	p, err := memscan.NewPattern(scalar)
	if err != nil {
		t.Fatal(err)
	}
	planted := plant(scalar)   // the control's copy, on the heap
	h, err := CopyFrom(s, der) // wipes der
	if err != nil {
		t.Fatal(err)
	}
	if n := len(scanSelf(t, p)); n != 1 {
		t.Fatalf("control: %d copies of the planted scalar found, want 1", n)
	}
	Wipe(planted)
	if n := len(scanSelf(t, p)); n != 0 {
		t.Fatalf("%d copies of the scalar before NewSigner, want 0", n)
	}
	if _, err := NewSigner(s, h); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("NewSigner: %v, want ErrInvalidKey", err)
	}
	if n := len(scanSelf(t, p)); n != 0 {
		t.Errorf("%d copies of the ECDSA scalar left after the refused NewSigner, want 0", n)
	}
}
