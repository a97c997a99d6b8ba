package memshuffle

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"testing"
)

// TestReadFromOddReaders: ReadFrom treats a reader that returns impossible
// counts, or nothing forever, as ReadAll does: a count past len(p) or below
// zero gives ErrInvalidCount, maxEmptyReads empty reads in a row give
// io.ErrNoProgress, and in every case no entry is left.
func TestReadFromOddReaders(t *testing.T) {
	cases := []struct {
		name string
		read func(p []byte) (int, error)
		want error
	}{
		{"count past len(p)", func(p []byte) (int, error) { return len(p) + 3, nil }, ErrInvalidCount},
		{"count past len(p) with EOF", func(p []byte) (int, error) { return len(p) + 1, io.EOF }, ErrInvalidCount},
		{"negative count", func(p []byte) (int, error) { return -1, nil }, ErrInvalidCount},
		{"no progress", func(p []byte) (int, error) { return 0, nil }, io.ErrNoProgress},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newTest(t, WithShards(1))
			reads := 0
			r := readerFunc(func(p []byte) (int, error) {
				// A reader stuck before the fix would loop for ever: end it
				// with an error that is none of the wanted ones.
				if reads++; reads > 10*maxEmptyReads {
					return 0, errors.New("reader called without end")
				}
				return c.read(p)
			})
			h, err := ReadFrom(s, r, 16)
			if !errors.Is(err, c.want) || !h.IsZero() {
				t.Fatalf("ReadFrom: %v, %v; want %v", h, err, c.want)
			}
			if st := s.Stats(); st.Entries != 0 || st.Rented+st.Viewed != 0 {
				t.Fatalf("entry left behind: %+v", st)
			}
		})
	}
}

// TestReadAllTypedNilReader: a typed nil reader whose Len method, like its
// Read, dereferences its receiver makes ReadAll return ErrPanicked, as it
// does for ReadFrom and ReadUntil, instead of panicking in the size guess.
func TestReadAllTypedNilReader(t *testing.T) {
	for name, r := range map[string]io.Reader{
		"*bytes.Reader":   (*bytes.Reader)(nil),
		"*strings.Reader": (*strings.Reader)(nil),
		"*bytes.Buffer":   (*bytes.Buffer)(nil),
	} {
		t.Run(name, func(t *testing.T) {
			s := newTest(t, WithShards(1))
			var h Handle
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						err = fmt.Errorf("panicked: %v", p)
					}
				}()
				h, err = ReadAll(s, r, 64)
			}()
			if !errors.Is(err, ErrPanicked) || !h.IsZero() {
				t.Fatalf("ReadAll: %v, %v; want ErrPanicked", h, err)
			}
			if st := s.Stats(); st.Entries != 0 || st.Rented+st.Viewed != 0 {
				t.Fatalf("entry left behind: %+v", st)
			}
		})
	}
}

// TestSignOptsNoPanic: SignerOpts that crypto/ecdsa and crypto/rsa panic on
// (a hash function unknown or not linked into the program, a nil pointer)
// make Sign return an error, ErrNilArgument for a nil pointer and
// ErrInvalidOption otherwise, for every kind of key and with and without
// rand: ECDSA with rand, which crypto/ecdsa lets sign under a hash it does
// not know, included; ECDSA with a nil rand gets ErrUnsupported for opts
// that pass Sign's own checks. The Signer still signs afterwards: the
// panic left no lock held.
func TestSignOptsNoPanic(t *testing.T) {
	s := newTest(t)
	unknown := crypto.Hash(200) // past every hash crypto knows
	cases := []struct {
		name string
		opts crypto.SignerOpts
		want error
	}{
		{"nil *rsa.PSSOptions", (*rsa.PSSOptions)(nil), ErrNilArgument},
		{"nil *ed25519.Options", (*ed25519.Options)(nil), ErrNilArgument},
		{"unknown hash", unknown, ErrInvalidOption},
		{"PSS with hash 0", &rsa.PSSOptions{}, ErrInvalidOption},
		{"PSS with unknown hash", &rsa.PSSOptions{Hash: unknown}, ErrInvalidOption},
		{"Ed25519 context of 300 bytes", &ed25519.Options{Context: strings.Repeat("c", 300)}, nil},
	}
	for _, k := range testKeys() {
		sg := newTestSigner(t, s, k.priv)
		for _, c := range cases {
			for _, rnd := range []io.Reader{nil, rand.Reader} {
				t.Run(fmt.Sprintf("%s/%s/rand=%v", k.name, c.name, rnd != nil), func(t *testing.T) {
					var err error
					func() {
						defer func() {
							if p := recover(); p != nil {
								t.Fatalf("Sign panicked: %v", p)
							}
						}()
						_, err = sg.Sign(rnd, make([]byte, 32), c.opts)
					}()
					// A nil pointer is refused up front. A hash the
					// standard library panics on is one crypto/rsa needs
					// always and crypto/ecdsa with nil rand only; with
					// rand, crypto/ecdsa ignores opts, and Sign refuses
					// an unknown hash itself (but signs under hash 0, as
					// crypto/ecdsa does). crypto/ed25519 refuses such
					// opts with an error of its own.
					_, isEd := k.priv.(ed25519.PrivateKey)
					_, isEC := k.priv.(*ecdsa.PrivateKey)
					if isEC && rnd == nil && c.want != ErrNilArgument {
						// ECDSA refuses a nil rand once opts pass
						// Sign's own checks: an unknown hash first.
						want := ErrUnsupported
						if h := c.opts.HashFunc(); h != 0 {
							if _, known := hashSize(h); !known {
								want = ErrInvalidOption
							}
						}
						if !errors.Is(err, want) {
							t.Errorf("Sign: %v, want %v", err, want)
						}
						return
					}
					typed := c.want == ErrNilArgument ||
						(c.want != nil && !isEd && !(isEC && rnd != nil && c.opts.HashFunc() == 0))
					if typed && !errors.Is(err, c.want) {
						t.Errorf("Sign: %v, want %v", err, c.want)
					}
				})
			}
		}
		msg, opts := []byte("message"), crypto.SignerOpts(crypto.Hash(0))
		if _, ok := k.priv.(ed25519.PrivateKey); !ok {
			d := sha256.Sum256(msg)
			msg, opts = d[:], crypto.SHA256
		}
		sig, err := sg.Sign(rand.Reader, msg, opts)
		if err != nil {
			t.Fatalf("%s: Sign after the bad options: %v", k.name, err)
		}
		verify(t, sg.Public(), msg, sig, opts)
	}
}

// TestMACSameHashTwice: a hash function that returns the same hash twice
// makes hmac.New panic; MAC, whose result must equal crypto/hmac's, must
// not return a wrong MAC for it but an error.
func TestMACSameHashTwice(t *testing.T) {
	s := newTest(t)
	kh, err := CopyFrom(s, []byte("key"))
	if err != nil {
		t.Fatal(err)
	}
	one := sha256.New()
	dst := []byte("kept")
	got, err := MAC(s, kh, func() hash.Hash { return one }, []byte("message"), dst)
	if !errors.Is(err, ErrInvalidOption) || !bytes.Equal(got, dst) {
		t.Fatalf("MAC with one hash for both: %x, %v; want dst unchanged and ErrInvalidOption", got, err)
	}
	// A hash type that cannot be compared is taken as it comes, as
	// crypto/hmac takes it.
	mac, err := MAC(s, kh, func() hash.Hash { return uncomparableHash{Hash: sha256.New()} }, []byte("message"), nil)
	want := hmac.New(sha256.New, []byte("key"))
	want.Write([]byte("message"))
	if err != nil || !hmac.Equal(mac, want.Sum(nil)) {
		t.Fatalf("MAC with an uncomparable hash type: %x, %v", mac, err)
	}
}

// uncomparableHash is a hash.Hash whose dynamic type cannot be compared
// with ==.
type uncomparableHash struct {
	hash.Hash
	_ []byte
}

// panickyHash is a SHA-256 whose Write keeps the first block it is given
// and then panics, as a hash backed by a device that fails might.
type panickyHash struct {
	hash.Hash
	seen *[]byte
}

func (h panickyHash) Write(p []byte) (int, error) {
	if *h.seen == nil {
		*h.seen = p
		panic("hash device failed")
	}
	return h.Hash.Write(p)
}

// TestMACPanickingHashWipesPad: when the caller's hash panics, MAC
// returns ErrPanicked, as ReadFrom does for a reader, with the view of the
// key ended and the block it derived from the key (key XOR ipad) wiped
// rather than left on the heap.
func TestMACPanickingHashWipesPad(t *testing.T) {
	s := newTest(t)
	kh, err := CopyFrom(s, []byte("key"))
	if err != nil {
		t.Fatal(err)
	}
	var seen []byte
	dst := []byte("kept")
	got, err := MAC(s, kh, func() hash.Hash { return panickyHash{sha256.New(), &seen} }, []byte("message"), dst)
	if !errors.Is(err, ErrPanicked) || string(got) != "kept" {
		t.Fatalf("MAC with a hash that panics: %q, %v; want dst as it was and ErrPanicked", got, err)
	}
	if st := s.Stats(); st.Viewed != 0 {
		t.Fatalf("%d views left open after the hash's panic", st.Viewed)
	}
	if len(seen) != sha256.BlockSize {
		t.Fatalf("the hash was given %d bytes first, want the %d-byte padded key", len(seen), sha256.BlockSize)
	}
	if !bytes.Equal(seen, make([]byte, len(seen))) {
		t.Errorf("the padded key is left after the panic: %x", seen)
	}
}

// TestAEADNilReceiver: Seal and Open on a nil *AEAD, what a NewAEAD whose
// error was ignored leaves, fail with ErrNilArgument instead of panicking,
// and return dst as it was.
func TestAEADNilReceiver(t *testing.T) {
	var a *AEAD
	nonce, dst := make([]byte, aeadNonceSize), []byte("kept")
	for name, f := range map[string]func() ([]byte, error){
		"Seal": func() ([]byte, error) { return a.Seal(dst, nonce, []byte("plaintext"), nil) },
		"Open": func() ([]byte, error) { return a.Open(dst, nonce, make([]byte, 32), nil) },
	} {
		var got []byte
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panicked: %v", p)
				}
			}()
			got, err = f()
		}()
		if !errors.Is(err, ErrNilArgument) || !bytes.Equal(got, dst) {
			t.Errorf("%s on a nil *AEAD: %q, %v; want dst and ErrNilArgument", name, got, err)
		}
	}
}

// TestECDSASignRefusesDigestLength: an ECDSA Signer refuses a digest
// whose length is not that of opts' hash with a rand as with none.
// crypto/ecdsa checks it only with none (RFC 6979); with a rand it signed
// any digest, truncated to the curve's size, so a message passed for its
// hash was signed by its first bytes. Opts naming no hash still sign
// the digest as given.
func TestECDSASignRefusesDigestLength(t *testing.T) {
	s := newTest(t)
	for _, k := range testKeys() {
		ec, ok := k.priv.(*ecdsa.PrivateKey)
		if !ok {
			continue
		}
		sg := newTestSigner(t, s, ec)
		for _, r := range []io.Reader{nil, rand.Reader} {
			for _, n := range []int{0, 20, 31, 33, 64} {
				if _, err := sg.Sign(r, make([]byte, n), crypto.SHA256); !errors.Is(err, ErrInvalidOption) {
					t.Errorf("%s, rand %v: a %d-byte digest for SHA-256: %v, want ErrInvalidOption", k.name, r != nil, n, err)
				}
			}
			digest := sha256.Sum256([]byte("message"))
			sig, err := sg.Sign(r, digest[:], crypto.SHA256)
			if r == nil {
				// A digest of the right length meets the refusal of a
				// nil rand, which comes after the digest's checks.
				if !errors.Is(err, ErrUnsupported) {
					t.Errorf("%s, nil rand: %v, want ErrUnsupported", k.name, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s, rand %v: %v", k.name, r != nil, err)
			}
			verify(t, ec.Public(), digest[:], sig, crypto.SHA256)
		}
		// Hashes crypto knows the size of, linked into the program or not.
		for _, hh := range []crypto.Hash{crypto.MD4, crypto.RIPEMD160, crypto.BLAKE2b_256, crypto.MD5SHA1, crypto.SHA3_512} {
			if _, err := sg.Sign(rand.Reader, make([]byte, 100), hh); !errors.Is(err, ErrInvalidOption) {
				t.Errorf("%s: a 100-byte digest for %v, of %d bytes: %v, want ErrInvalidOption", k.name, hh, hh.Size(), err)
			}
		}
		raw := make([]byte, 48)
		sig, err := sg.Sign(rand.Reader, raw, crypto.Hash(0))
		if err != nil {
			t.Fatalf("%s: a digest with opts naming no hash: %v", k.name, err)
		}
		if !ecdsa.VerifyASN1(&ec.PublicKey, raw, sig) {
			t.Errorf("%s: the signature of a digest with opts naming no hash does not verify", k.name)
		}
	}
	if err := s.checkInvariants(); err != nil {
		t.Fatal(err)
	}
}

// TestSignErrorsTyped: what the standard library refuses to sign (opts it
// cannot use, a digest whose length does not fit them) comes back as an
// error matching ErrInvalidOption, prefixed "memshuffle: ", as every error
// of the package is, with the standard library's error still wrapped.
func TestSignErrorsTyped(t *testing.T) {
	s := newTest(t)
	for _, k := range testKeys() {
		sg := newTestSigner(t, s, k.priv)
		cases := map[string]struct {
			digest []byte
			opts   crypto.SignerOpts
		}{
			"SHA-256 opts, 20-byte digest": {make([]byte, 20), crypto.SHA256},
			"PSS salt length -5":           {make([]byte, 32), &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: -5}},
			"Ed25519 context of 300 bytes": {make([]byte, 32), &ed25519.Options{Context: strings.Repeat("c", 300)}},
		}
		// ECDSA refuses a nil rand once opts pass Sign's own checks.
		var rnd io.Reader
		if _, isEC := k.priv.(*ecdsa.PrivateKey); isEC {
			rnd = rand.Reader
		}
		for name, c := range cases {
			_, err := sg.Sign(rnd, c.digest, c.opts)
			if err == nil {
				continue // this kind of key takes it (ECDSA ignores a context)
			}
			if !errors.Is(err, ErrInvalidOption) || !strings.HasPrefix(err.Error(), "memshuffle: ") {
				t.Errorf("%s, %s: %v, want an error matching ErrInvalidOption", k.name, name, err)
			}
		}
	}
}
