package memshuffle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
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
// material but what in holds (the key's base64 text, for a test of PEM
// text), which it wipes, and in, which it wipes after the call. The
// collector is off in the caller, so freed memory is not reused and what
// was left stays to be found; the scan is first shown to find a planted
// copy, then only in's before the call.
func importLeavesNoCopy(t *testing.T, s *Shuffler, secret, in []byte, want error) {
	t.Helper()
	p, err := memscan.NewPattern(secret)
	if err != nil {
		t.Fatal(err)
	}
	inside := bytes.Count(in, secret)
	planted := plant(secret)
	Wipe(secret)
	if n := len(scanSelf(t, p)); n != 1+inside {
		t.Fatalf("control: %d copies of the planted secret found, want %d", n, 1+inside)
	}
	Wipe(planted)
	if n := len(scanSelf(t, p)); n != inside {
		t.Fatalf("%d copies of the secret before ReadPrivateKey, want %d", n, inside)
	}
	if _, err := ReadPrivateKey(s, bytes.NewReader(in)); !errors.Is(err, want) {
		t.Fatalf("ReadPrivateKey: %v, want %v", err, want)
	}
	Wipe(in)
	if n := len(scanSelf(t, p)); n != 0 {
		t.Errorf("%d copies of the key left after the failed ReadPrivateKey, want 0", n)
	}
}

// TestReadPrivateKeyDamagedTextLeavesNothing: a damaged PEM key whose
// base64 shares a line with a marker (a lost newline before the END line,
// or a file kept on one line with its newlines escaped, as in an
// environment variable, or text between dashes on a body line with a
// space) is refused, and leaves no copy of its text: a check's shadow of
// the input kept such lines as they were, was not wiped, and, decoded,
// copied a body line with spaces. A key on one line that ends in dashes
// (newlines lost, or escaped but the last) reads as one BEGIN marker whose
// type is the key's text, which was kept as a Go string.
func TestReadPrivateKeyDamagedTextLeavesNothing(t *testing.T) {
	skipScanUnderRace(t)
	for _, tc := range []struct{ name, head, tail string }{
		{"body run into END", "-----BEGIN PRIVATE KEY-----\n", "-----END PRIVATE KEY-----\n"},
		{"escaped newlines", `-----BEGIN PRIVATE KEY-----\n`, `\n-----END PRIVATE KEY-----\n`},
		{"one line, newlines lost", "-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----\n"},
		{"one line, escaped newlines but the last", `-----BEGIN PRIVATE KEY-----\n`, `\n-----END PRIVATE KEY-----` + "\n"},
		{"between dashes, after a space", "-----BEGIN PRIVATE KEY-----\nMC4C AQAw-----", "-----\n-----END PRIVATE KEY-----\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer debug.SetGCPercent(debug.SetGCPercent(-1))
			der := append([]byte{0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20}, make([]byte, 32)...)
			rand.Read(der[16:])
			text := make([]byte, base64.StdEncoding.EncodedLen(len(der)))
			base64.StdEncoding.Encode(text, der)
			Wipe(der)
			in := make([]byte, 0, len(tc.head)+len(text)+len(tc.tail)) // one buffer: a grown one would leave the text in the old
			in = append(append(append(in, tc.head...), text...), tc.tail...)
			importLeavesNoCopy(t, newTest(t), text, in, ErrInvalidKey)
		})
	}
}

// TestReadPrivateKeyMidLineBeginLeavesNothing: a damaged key whose BEGIN
// marker follows an END marker on the same line leaves no copy of its
// seed. encoding/pem takes that BEGIN for a block's start, decoded the
// body up to the fault and dropped it; the check before it did not see the
// block. The PEM is now decoded by the library, which takes markers only
// at a line's start, into memory it wipes.
func TestReadPrivateKeyMidLineBeginLeavesNothing(t *testing.T) {
	skipScanUnderRace(t)
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	der := append([]byte{0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20}, make([]byte, 32)...)
	rand.Read(der[16:])
	text := make([]byte, base64.StdEncoding.EncodedLen(len(der)))
	base64.StdEncoding.Encode(text, der)
	const head, tail = "\n-----END -----BEGIN PRIVATE KEY-----\n", "!\n-----END PRIVATE KEY-----\n"
	in := make([]byte, 0, len(head)+len(text)+len(tail))
	in = append(append(append(in, head...), text...), tail...)
	Wipe(text)
	importLeavesNoCopy(t, newTest(t), der[16:], in, ErrInvalidKey)
	Wipe(der)
}

// TestReadPrivateKeyMislabelledLeavesNothing: a key in a PEM block whose
// type names another form is refused before crypto/x509 parses it: its
// parser of the labelled form, failing, tried the bytes as the other
// forms to word its error, which copied the seed or scalar to the heap.
// The keys are built by hand on the heap, so the test holds no other copy.
func TestReadPrivateKeyMislabelledLeavesNothing(t *testing.T) {
	skipScanUnderRace(t)
	pkcs8Of := func(oid byte) []byte { // Ed25519 0x70, X25519 0x6e
		return append([]byte{0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, oid, 0x04, 0x22, 0x04, 0x20}, make([]byte, 32)...)
	}
	sec1 := func() []byte { // version 1, the scalar, P-256
		return append(append([]byte{0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20}, make([]byte, 32)...), 0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07)
	}
	for _, tc := range []struct {
		name, label string
		der         func() []byte
		at          int // where the secret starts
	}{
		{"Ed25519 as RSA PRIVATE KEY", "RSA PRIVATE KEY", func() []byte { return pkcs8Of(0x70) }, 16},
		{"Ed25519 as EC PRIVATE KEY", "EC PRIVATE KEY", func() []byte { return pkcs8Of(0x70) }, 16},
		{"X25519 as RSA PRIVATE KEY", "RSA PRIVATE KEY", func() []byte { return pkcs8Of(0x6e) }, 16},
		{"X25519 as EC PRIVATE KEY", "EC PRIVATE KEY", func() []byte { return pkcs8Of(0x6e) }, 16},
		{"SEC 1 as RSA PRIVATE KEY", "RSA PRIVATE KEY", sec1, 7},
		{"SEC 1 as PRIVATE KEY", "PRIVATE KEY", sec1, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer debug.SetGCPercent(debug.SetGCPercent(-1))
			der := tc.der()
			secret := der[tc.at : tc.at+32]
			rand.Read(secret)
			in := pem.EncodeToMemory(&pem.Block{Type: tc.label, Bytes: der})
			importLeavesNoCopy(t, newTest(t), secret, in, ErrInvalidKey)
			Wipe(der)
		})
	}
}

// TestReadPrivateKeyEd25519OddEncodingsLeaveNothing: Ed25519 PKCS#8 keys
// that RFC 8410 does not allow (NULL algorithm parameters, version 2) are
// refused with ErrInvalidKey, and leave no copy of the seed. They went to
// crypto/x509, whose encoding/asn1 pass copies the seed to the heap before
// it accepts (version 2, four copies) or refuses (parameters) the key.
func TestReadPrivateKeyEd25519OddEncodingsLeaveNothing(t *testing.T) {
	skipScanUnderRace(t)
	for _, tc := range []struct {
		name string
		der  []byte // the seed's 32 bytes last
	}{
		{"NULL parameters", []byte{0x30, 0x30, 0x02, 0x01, 0x00, 0x30, 0x07, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x05, 0x00, 0x04, 0x22, 0x04, 0x20}},
		{"version 2", []byte{0x30, 0x2e, 0x02, 0x01, 0x02, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer debug.SetGCPercent(debug.SetGCPercent(-1))
			der := append(bytes.Clone(tc.der), make([]byte, 32)...)
			seed := der[len(tc.der):]
			rand.Read(seed)
			in := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
			importLeavesNoCopy(t, newTest(t), seed, in, ErrInvalidKey)
		})
	}
}

// TestNewSignerEd25519ParamsLeavesNothing: NewSigner, given an entry with
// an Ed25519 PKCS#8 key with NULL algorithm parameters, refuses it with
// ErrInvalidKey and leaves no copy of the seed; crypto/x509 parsed it, and
// copied the seed, before it refused the parameters.
func TestNewSignerEd25519ParamsLeavesNothing(t *testing.T) {
	skipScanUnderRace(t)
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	s := newTest(t)
	der := append([]byte{0x30, 0x30, 0x02, 0x01, 0x00, 0x30, 0x07, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x05, 0x00, 0x04, 0x22, 0x04, 0x20}, make([]byte, 32)...)
	rand.Read(der[18:])
	p, err := memscan.NewPattern(der[18:])
	if err != nil {
		t.Fatal(err)
	}
	if n := len(scanSelf(t, p)); n != 1 {
		t.Fatalf("control: %d copies of the seed in the DER, want 1", n)
	}
	h, err := CopyFrom(s, der) // wipes der
	if err != nil {
		t.Fatal(err)
	}
	if n := len(scanSelf(t, p)); n != 0 {
		t.Fatalf("%d copies before NewSigner, want 0", n)
	}
	if _, err := NewSigner(s, h); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("NewSigner: %v, want ErrInvalidKey", err)
	}
	if n := len(scanSelf(t, p)); n != 0 {
		t.Errorf("%d copies of the Ed25519 seed left after NewSigner refused the key, want 0", n)
	}
}
