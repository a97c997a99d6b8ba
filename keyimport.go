package memshuffle

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// maxKeyFile bounds what ReadPrivateKey reads: an RSA-4096 key in PEM is
// about 3.3 KB.
const maxKeyFile = 64 << 10

// ReadPrivateKey reads a private key from r, in PEM or DER, and stores it
// in a new entry as PKCS#8 DER, the form NewSigner takes. Input that is
// one key in DER as a whole is read as DER, whatever its bytes hold;
// other input with a PEM BEGIN line is read as PEM. It accepts
// PKCS#8 ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE KEY") and SEC 1 ("EC PRIVATE
// KEY") keys of the kinds NewSigner supports; other PEM blocks before the
// key (an "EC PARAMETERS" block, say) are skipped, and encrypted PEM is
// refused. Anything else, input with a PEM block that does not decode, or
// input of 64 KiB or more, fails with
// ErrInvalidKey, and so do a PEM block whose bytes are not in the form its
// type names (an Ed25519 key labelled "RSA PRIVATE KEY"), input with
// more than one private key or with bytes after the key's DER (crypto/x509
// ignores them), an Ed25519 key that RFC 8410 does not allow (algorithm
// parameters, a version field other than 0 or 1, bytes after the seed), and an
// Ed25519 key whose seed is all zeros,
// which NewSigner refuses too. Errors of r are returned as ReadAll returns
// them: a panic wraps ErrPanicked, an impossible count ErrInvalidCount,
// and 100 empty reads in a row give io.ErrNoProgress. A closed or purged
// Shuffler fails with ErrClosed before r is read.
//
// The buffers ReadPrivateKey owns (what it read, the decoded PEM block, the
// DER it stores, the parsed key's numbers) are wiped before it returns,
// also on failure. An Ed25519 key in PKCS#8 is read and stored without
// crypto/x509, accepted or refused, which leaves no copy of it behind;
// ECDSA and RSA keys are parsed and marshalled by crypto/x509, which makes
// copies of its own on the way that ReadPrivateKey cannot reach. PEM is
// decoded by ReadPrivateKey
// itself, into memory it wipes (encoding/pem dropped a damaged block's
// decoded part, and a copy of a body with spaces, unwiped): markers are
// taken only at the start of a line, and input with a block that does not
// decode (damaged base64, a missing or mismatched END line) is refused. A
// PKCS#8 key of a kind no Signer takes (X25519, say), and a block whose
// bytes are in another form than its type names, are refused before
// anything parses them. In secret mode (see SecretMode)
// the whole import runs inside secret.Do, so those are erased too once
// unreachable. Whatever r keeps (a bufio.Reader's buffer) is up to r.
func ReadPrivateKey(s *Shuffler, r io.Reader) (h Handle, err error) {
	if r == nil {
		return Handle{}, fmt.Errorf("%w: nil io.Reader", ErrNilArgument)
	}
	// As ReadAll does: a key read for a Shuffler that cannot keep it would
	// only have been parsed and copied into the Go heap, and taken from r.
	if !s.made() || s.closed.Load() {
		return Handle{}, ErrClosed
	}
	runSecret(func() { h, err = readPrivateKey(s, r) })
	return h, err
}

func readPrivateKey(s *Shuffler, r io.Reader) (Handle, error) {
	in, err := readAllWiping(r)
	// All of it: r may have used the part past what it returned as
	// scratch, as io.Reader allows.
	defer Wipe(in[:cap(in)])
	if err != nil {
		return Handle{}, err
	}
	der, form := in, ""
	// A key in DER is binary, and its bytes may hold anything, the PEM
	// marker too: input that is one DER key as a whole is taken as DER.
	if derForm(in) == "" && bytes.Contains(in, []byte("-----BEGIN")) {
		blocks, err := decodePEM(in)
		if err != nil {
			return Handle{}, err
		}
		defer func() {
			for _, b := range blocks {
				Wipe(b.der)
			}
		}()
		der = nil
		// Every block is looked at: a second key would otherwise be
		// dropped unseen, and which one the caller meant is not ours to
		// guess.
		for _, block := range blocks {
			typ := keyBlockType(block.typ)
			if typ == "" {
				continue
			}
			if der != nil {
				return Handle{}, fmt.Errorf("%w: more than one private key in the PEM input", ErrInvalidKey)
			}
			if block.encrypted {
				return Handle{}, fmt.Errorf("%w: encrypted PEM", ErrInvalidKey)
			}
			if typ == "ENCRYPTED PRIVATE KEY" {
				return Handle{}, fmt.Errorf("%w: encrypted PKCS#8", ErrInvalidKey)
			}
			der, form = block.der, typ
		}
		if der == nil {
			return Handle{}, fmt.Errorf("%w: no private key in the PEM input", ErrInvalidKey)
		}
	}
	// Only the parser of the form the bytes have runs: crypto/x509's
	// parsers, failing, try the bytes as the other forms to word their
	// error, which copies the key to the heap.
	shape := derForm(der)
	if shape == "" {
		return Handle{}, fmt.Errorf("%w: neither PKCS#8, PKCS#1 nor SEC 1", ErrInvalidKey)
	}
	if form != "" && form != shape {
		return Handle{}, fmt.Errorf("%w: not a key in the form a %q PEM block holds", ErrInvalidKey, form)
	}
	form = shape
	// An Ed25519 key is read without crypto/x509, whose parse copies the
	// seed to the heap before it accepts or refuses the key; a key this
	// stricter parse refuses (parameters, another version) is refused.
	if form == "PRIVATE KEY" && pkcs8IsEd25519(der) {
		seed, err := pkcs8Ed25519Seed(der)
		if err != nil {
			return Handle{}, err
		}
		return importEd25519(s, seed)
	}
	if form == "PRIVATE KEY" && !pkcs8Supported(der) {
		// crypto/x509 would parse an X25519 key, say, copying its scalar
		// to the heap where no wipe reaches, only for it to be refused.
		return Handle{}, fmt.Errorf("%w: a PKCS#8 key of a kind a Signer cannot use", ErrInvalidKey)
	}
	key, err := parsePrivateKey(der, form)
	if err != nil {
		return Handle{}, err
	}
	defer wipeKey(key)
	if err := new(signer).setPublic(key); err != nil {
		return Handle{}, err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Handle{}, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	// CopyFrom wipes p8 only once an entry holds it; on failure it keeps
	// its src for the caller, but p8 is ours, and nobody else will.
	defer Wipe(p8)
	return CopyFrom(s, p8)
}

// parsePrivateKey parses der in form, the one derForm gives it.
func parsePrivateKey(der []byte, form string) (key any, err error) {
	switch form {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(der)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(der)
	default:
		key, err = x509.ParseECPrivateKey(der)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: not a valid %s: %w", ErrInvalidKey, form, err)
	}
	return key, nil
}

// derForm names the form of the private key der looks like, by the PEM
// block type of that form, from the tags alone, and copies nothing: a
// SEQUENCE of an INTEGER and then an AlgorithmIdentifier SEQUENCE for
// PKCS#8, another INTEGER for PKCS#1, an OCTET STRING for SEC 1. It
// returns "" for anything else. Each parser of crypto/x509 accepts only
// keys of its own form, so only the one derForm names can succeed.
func derForm(der []byte) string {
	in := cryptobyte.String(der)
	var body cryptobyte.String
	// Nothing after the key: crypto/x509's parsers ignore what follows, so
	// a second key there would be dropped unseen.
	if !in.ReadASN1(&body, asn1.SEQUENCE) || !in.Empty() || !body.SkipASN1(asn1.INTEGER) {
		return ""
	}
	switch {
	case body.PeekASN1Tag(asn1.SEQUENCE):
		return "PRIVATE KEY"
	case body.PeekASN1Tag(asn1.INTEGER):
		return "RSA PRIVATE KEY"
	case body.PeekASN1Tag(asn1.OCTET_STRING):
		return "EC PRIVATE KEY"
	}
	return ""
}

// errKeyFileSize is returned for input of maxKeyFile bytes or more.
var errKeyFileSize = fmt.Errorf("%w: %d bytes or more", ErrInvalidKey, maxKeyFile)

// readAllWiping reads r to the end, below maxKeyFile bytes, wiping every
// buffer it outgrows. On error, a panic of r's included, everything read
// is wiped and nil returned; so it is when r ends the goroutine with
// runtime.Goexit (t.FailNow does), which neither returns nor panics. Reads
// go through readSome, which refuses impossible counts and gives up on a
// reader that makes no progress.
func readAllWiping(r io.Reader) (b []byte, err error) {
	b = make([]byte, 0, 4<<10)
	read := false
	defer func() {
		if p := recover(); p != nil {
			err = panicError("reader", p)
		}
		if err != nil || !read {
			Wipe(b[:cap(b)])
			b = nil
		}
	}()
	for {
		if len(b) == cap(b) {
			if len(b) >= maxKeyFile {
				return b, errKeyFileSize
			}
			nb := make([]byte, len(b), min(2*cap(b), maxKeyFile))
			copy(nb, b)
			Wipe(b)
			b = nb
		}
		n, err := readSome(r, b[len(b):cap(b)])
		b = b[:len(b)+n]
		// io.EOF itself, as ReadAll has it: an error that wraps it is the
		// reader's failure, not the end of the key.
		if err == io.EOF {
			// The limit does not depend on whether r gives its last bytes
			// with io.EOF or before it.
			if len(b) >= maxKeyFile {
				return b, errKeyFileSize
			}
			read = true
			return b, nil
		}
		if err != nil {
			return b, fmt.Errorf("memshuffle: reading a private key: %w", err)
		}
	}
}

// ed25519PKCS8Prefix is what precedes the seed in the PKCS#8 form of an
// Ed25519 key that crypto/x509 marshals (RFC 8410, section 7): version 0,
// the algorithm without parameters, the seed as an OCTET STRING inside the
// privateKey OCTET STRING.
var ed25519PKCS8Prefix = []byte{0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20}

// importEd25519 stores the Ed25519 key of seed in a new entry, in the
// PKCS#8 form crypto/x509 marshals, without crypto/x509: its parse copies
// the seed to the heap (encoding/asn1 copies an OCTET STRING) and its
// marshal does again, where nothing can wipe them. Any 32-byte seed is a
// key, but one of zeros, which NewSigner refuses.
func importEd25519(s *Shuffler, seed []byte) (Handle, error) {
	if keyIsZero(seed) {
		return Handle{}, fmt.Errorf("%w: Ed25519 seed of zeros", ErrInvalidKey)
	}
	p8 := make([]byte, 0, len(ed25519PKCS8Prefix)+len(seed))
	p8 = append(append(p8, ed25519PKCS8Prefix...), seed...)
	defer Wipe(p8)
	return CopyFrom(s, p8)
}
