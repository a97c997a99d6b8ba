package memshuffle

import (
	"crypto/ecdsa"
	"crypto/elliptic"
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
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := ec.Bytes()
	p, err := memscan.NewPattern(d)
	if err != nil {
		t.Fatal(err)
	}
	h, err := CopyFrom(s, der) // wipes der
	if err != nil {
		t.Fatal(err)
	}
	before := len(scanSelf(t, p)) // the test's own key and d, and what GenerateKey left
	if before == 0 {
		t.Fatal("control: the test's own copy of the scalar not found")
	}
	if _, err := NewSigner(s, h); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("NewSigner: %v, want ErrInvalidKey", err)
	}
	if after := len(scanSelf(t, p)); after > before {
		t.Errorf("%d copies of the ECDSA scalar after the refused NewSigner, %d before", after, before)
	}
}
