package memshuffle

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	mathrand "math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cryptobyte_asn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// testKey is a key of one kind NewSigner supports, made once per test
// binary: RSA key generation is slow.
type testKey struct {
	name string
	priv crypto.Signer
}

var testKeys = sync.OnceValue(func() []testKey {
	must := func(k crypto.Signer, err error) crypto.Signer {
		if err != nil {
			panic(err)
		}
		return k
	}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	return []testKey{
		{"Ed25519", ed},
		{"P256", must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))},
		{"P384", must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))},
		{"P521", must(ecdsa.GenerateKey(elliptic.P521(), rand.Reader))},
		{"RSA2048", must(rsa.GenerateKey(rand.Reader, 2048))},
	}
})

// pkcs8 returns key's PKCS#8 DER.
func pkcs8(t testing.TB, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// newTestSigner stores key in s and returns a Signer for it.
func newTestSigner(t testing.TB, s *Shuffler, key any) crypto.Signer {
	t.Helper()
	h, err := CopyFrom(s, pkcs8(t, key))
	if err != nil {
		t.Fatal(err)
	}
	sg, err := NewSigner(s, h)
	if err != nil {
		t.Fatal(err)
	}
	return sg
}

// verify checks sig over msg with pub, hashing msg with hash first except
// for Ed25519.
func verify(t testing.TB, pub crypto.PublicKey, msg, sig []byte, opts crypto.SignerOpts) {
	t.Helper()
	var ok bool
	switch pub := pub.(type) {
	case ed25519.PublicKey:
		ok = ed25519.VerifyWithOptions(pub, msg, sig, &ed25519.Options{Hash: opts.HashFunc()}) == nil
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(pub, msg, sig)
	case *rsa.PublicKey:
		if pss, isPSS := opts.(*rsa.PSSOptions); isPSS {
			ok = rsa.VerifyPSS(pub, opts.HashFunc(), msg, sig, pss) == nil
		} else {
			ok = rsa.VerifyPKCS1v15(pub, opts.HashFunc(), msg, sig) == nil
		}
	}
	if !ok {
		t.Fatalf("signature does not verify with %T", pub)
	}
}

func TestSigner(t *testing.T) {
	s := newTest(t)
	for _, k := range testKeys() {
		t.Run(k.name, func(t *testing.T) {
			sg := newTestSigner(t, s, k.priv)
			pub := k.priv.Public().(interface{ Equal(crypto.PublicKey) bool })
			if !pub.Equal(sg.Public()) {
				t.Fatal("Public differs from the key's")
			}
			msg := []byte("a message to sign")
			digest := sha256.Sum256(msg)
			opts := []crypto.SignerOpts{crypto.SHA256}
			in := digest[:]
			if k.name == "Ed25519" {
				opts, in = []crypto.SignerOpts{crypto.Hash(0)}, msg
			}
			if k.name == "RSA2048" {
				opts = append(opts, &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash})
			}
			for _, o := range opts {
				sig, err := sg.Sign(rand.Reader, in, o)
				if err != nil {
					t.Fatal(err)
				}
				verify(t, sg.Public(), in, sig, o)
				// Without rand, Ed25519 and RSA PKCS #1 v1.5 are
				// deterministic: the same bytes as the key's own. ECDSA
				// refuses to sign without one (RFC 6979 leaves the
				// scalar on the heap).
				if _, isEC := k.priv.(*ecdsa.PrivateKey); isEC {
					if sig, err := sg.Sign(nil, in, o); !errors.Is(err, ErrUnsupported) || sig != nil {
						t.Fatalf("ECDSA with a nil rand: %x, %v; want ErrUnsupported", sig, err)
					}
				} else if _, isPSS := o.(*rsa.PSSOptions); !isPSS {
					want, err := k.priv.Sign(nil, in, o)
					if err != nil {
						t.Fatal(err)
					}
					if got, err := sg.Sign(nil, in, o); err != nil || !bytes.Equal(got, want) {
						t.Fatalf("deterministic signature differs from the key's own (%v)", err)
					}
				}
			}
			if k.name == "Ed25519" {
				ph := sha512.Sum512(msg)
				o := &ed25519.Options{Hash: crypto.SHA512, Context: "ctx"}
				sig, err := sg.Sign(nil, ph[:], o)
				if err != nil {
					t.Fatal(err)
				}
				if err := ed25519.VerifyWithOptions(sg.Public().(ed25519.PublicKey), ph[:], sig, o); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := sg.Sign(nil, in, nil); !errors.Is(err, ErrNilArgument) {
				t.Fatalf("nil opts: %v, want ErrNilArgument", err)
			}
		})
	}
}

// TestSignerRFC8032 checks the Ed25519 path against test 1 of RFC 8032,
// section 7.1.
func TestSignerRFC8032(t *testing.T) {
	seed := unhex(t, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	wantPub := unhex(t, "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
	wantSig := unhex(t, "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"+
		"5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
	s := newTest(t)
	sg := newTestSigner(t, s, ed25519.NewKeyFromSeed(seed))
	if !bytes.Equal(sg.Public().(ed25519.PublicKey), wantPub) {
		t.Fatal("public key differs from RFC 8032's")
	}
	for range 3 { // the default build reuses one key buffer: sign more than once
		sig, err := sg.Sign(nil, nil, crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sig, wantSig) {
			t.Fatalf("signature %x, want RFC 8032's", sig)
		}
	}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b := make([]byte, len(s)/2)
	for i := range b {
		var v byte
		for _, c := range s[2*i : 2*i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			case c >= 'a' && c <= 'f':
				v |= byte(c - 'a' + 10)
			default:
				t.Fatalf("bad hex %q", s)
			}
		}
		b[i] = v
	}
	return b
}

// ed25519DER is an Ed25519 PKCS#8 key of seed with the algorithm's
// parameters params (none, as RFC 8410 requires, if nil).
func ed25519DER(params, seed []byte) []byte {
	alg := append([]byte{6, 3, 43, 101, 112}, params...)
	priv := append([]byte{4, byte(len(seed))}, seed...)
	body := append([]byte{2, 1, 0, 0x30, byte(len(alg))}, alg...)
	body = append(body, 4, byte(len(priv)))
	body = append(body, priv...)
	return append([]byte{0x30, byte(len(body))}, body...)
}

// x25519Key is an X25519 key, whose PKCS#8 form is Ed25519's with another
// algorithm identifier.
func x25519Key(t *testing.T) *ecdh.PrivateKey {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignerErrors(t *testing.T) {
	s := newTest(t)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	for name, der := range map[string][]byte{
		"garbage":  []byte("not a key at all, not even DER"),
		"P224":     pkcs8(t, p224),
		"RSA1024":  pkcs8(t, rsa1024),
		"PKCS1":    x509.MarshalPKCS1PrivateKey(rsa1024),
		"trailing": append(pkcs8(t, testKeys()[0].priv), 0),
		// Ed25519 keys NewSigner parses itself (RFC 8410's form).
		"Ed25519/seed-of-zeros":        ed25519DER(nil, make([]byte, 32)),
		"Ed25519/with-NULL-parameters": ed25519DER([]byte{5, 0}, bytes.Repeat([]byte{7}, 32)),
		"Ed25519/short-seed":           ed25519DER(nil, bytes.Repeat([]byte{7}, 31)),
		"X25519":                       pkcs8(t, x25519Key(t)),
	} {
		h, err := CopyFrom(s, der)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NewSigner(s, h); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%s: %v, want ErrInvalidKey", name, err)
		}
	}
	if _, err := NewSigner(s, Handle{}); !errors.Is(err, ErrInvalidHandle) {
		t.Errorf("zero handle: %v", err)
	}
	// Another Ed25519 key in the entry: signing with it under the first
	// key's public half would give it away.
	_, ed2, _ := ed25519.GenerateKey(rand.Reader)
	h, _ := CopyFrom(s, pkcs8(t, testKeys()[0].priv))
	sg, err := NewSigner(s, h)
	if err != nil {
		t.Fatal(err)
	}
	other := pkcs8(t, ed2)
	BorrowSlice(s, h, func(b []byte) error { copy(b, other); return nil })
	if _, err := sg.Sign(nil, []byte("m"), crypto.Hash(0)); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Ed25519 key replaced: %v, want ErrInvalidKey", err)
	}
	// An entry changed under the Signer, or freed, fails cleanly.
	for _, k := range testKeys() {
		h, _ := CopyFrom(s, pkcs8(t, k.priv))
		sg, err := NewSigner(s, h)
		if err != nil {
			t.Fatal(err)
		}
		BorrowSlice(s, h, func(b []byte) error { clear(b); return nil })
		if _, err := sg.Sign(rand.Reader, make([]byte, 32), crypto.SHA256); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%s, zeroed entry: %v, want ErrInvalidKey", k.name, err)
		}
		s.Free(h)
		if _, err := sg.Sign(rand.Reader, make([]byte, 32), crypto.SHA256); !errors.Is(err, ErrInvalidHandle) {
			t.Errorf("%s, freed entry: %v, want ErrInvalidHandle", k.name, err)
		}
	}
}

// TestSignerECDSARefusesAnotherKey: an ECDSA Signer whose entry now
// holds another key of its curve fails Sign with ErrInvalidKey instead of
// signing with the other scalar, whose signatures Public does not verify,
// and signs again once the entry holds its key back. (Ed25519:
// TestSignerErrors; RSA: TestSignerRSAEntryReplaced.)
func TestSignerECDSARefusesAnotherKey(t *testing.T) {
	s := newTest(t)
	digest := sha256.Sum256([]byte("message"))
	for _, k := range testKeys() {
		priv, ok := k.priv.(*ecdsa.PrivateKey)
		if !ok {
			continue
		}
		other, err := ecdsa.GenerateKey(priv.Curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		mine, theirs := pkcs8(t, priv), pkcs8(t, other)
		if len(mine) != len(theirs) {
			t.Fatalf("%s: PKCS#8 DERs of %d and %d bytes", k.name, len(mine), len(theirs))
		}
		h, err := CopyFrom(s, slices.Clone(mine))
		if err != nil {
			t.Fatal(err)
		}
		sg, err := NewSigner(s, h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sg.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
			t.Fatalf("%s: %v", k.name, err)
		}
		if err := BorrowSlice(s, h, func(b []byte) error { copy(b, theirs); return nil }); err != nil {
			t.Fatal(err)
		}
		if sig, err := sg.Sign(rand.Reader, digest[:], crypto.SHA256); !errors.Is(err, ErrInvalidKey) || sig != nil {
			t.Errorf("%s, another key in the entry: %x, %v; want ErrInvalidKey", k.name, sig, err)
		}
		if err := BorrowSlice(s, h, func(b []byte) error { copy(b, mine); return nil }); err != nil {
			t.Fatal(err)
		}
		sig, err := sg.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatalf("%s, the key back in the entry: %v", k.name, err)
		}
		verify(t, sg.Public(), digest[:], sig, crypto.SHA256)
		s.Free(h)
	}
	if err := s.checkInvariants(); err != nil {
		t.Fatal(err)
	}
}

// TestSignerConcurrent signs from several goroutines at once with each
// kind of key; run with -race.
func TestSignerConcurrent(t *testing.T) {
	s := newTest(t)
	for _, k := range testKeys()[:2] {
		sg := newTestSigner(t, s, k.priv)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				msg := []byte{byte(g)}
				digest := sha256.Sum256(msg)
				in, o := digest[:], crypto.SignerOpts(crypto.SHA256)
				if k.name == "Ed25519" {
					in, o = msg, crypto.Hash(0)
				}
				for range 20 {
					sig, err := sg.Sign(rand.Reader, in, o)
					if err != nil {
						t.Error(err)
						return
					}
					verify(t, sg.Public(), in, sig, o)
				}
			})
		}
		wg.Wait()
	}
}

// TestSignerTLS13 completes TLS 1.3 handshakes on 127.0.0.1 with a Signer
// as the certificate's key, for each kind the issue names, the certificate
// itself made by x509.CreateCertificate with the Signer.
func TestSignerTLS13(t *testing.T) {
	s := newTest(t)
	for _, k := range []testKey{testKeys()[0], testKeys()[1], testKeys()[4]} {
		t.Run(k.name, func(t *testing.T) {
			sg := newTestSigner(t, s, k.priv)
			tmpl := &x509.Certificate{
				SerialNumber: big.NewInt(1),
				Subject:      pkix.Name{CommonName: "memshuffle test"},
				NotBefore:    time.Now().Add(-time.Hour),
				NotAfter:     time.Now().Add(time.Hour),
				KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
				ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
				IsCA:         true, BasicConstraintsValid: true,
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, sg.Public(), sg)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := cert.CheckSignatureFrom(cert); err != nil {
				t.Fatal(err)
			}
			ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
				Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: sg}},
				MinVersion:   tls.VersionTLS13,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						c.SetDeadline(time.Now().Add(10 * time.Second))
						io.Copy(c, c)
					}()
				}
			}()
			pool := x509.NewCertPool()
			pool.AddCert(cert)
			for range 3 {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				d := tls.Dialer{Config: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13, ServerName: "127.0.0.1"}}
				c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				st := c.(*tls.Conn).ConnectionState()
				if st.Version != tls.VersionTLS13 || !st.HandshakeComplete {
					t.Fatalf("version %x, complete %v", st.Version, st.HandshakeComplete)
				}
				c.Write([]byte("ping"))
				buf := make([]byte, 4)
				if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
					t.Fatalf("echo: %q, %v", buf, err)
				}
				c.Close()
			}
		})
	}
}

func TestReadPrivateKey(t *testing.T) {
	s := newTest(t)
	ecKey := testKeys()[1].priv.(*ecdsa.PrivateKey)
	rsaKey := testKeys()[4].priv.(*rsa.PrivateKey)
	sec1, _ := x509.MarshalECPrivateKey(ecKey)
	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	params := pemOf("EC PARAMETERS", []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7})
	for _, tc := range []struct {
		name string
		in   []byte
		key  crypto.Signer
	}{
		{"PKCS8 DER Ed25519", pkcs8(t, testKeys()[0].priv), testKeys()[0].priv},
		{"PKCS8 PEM Ed25519", pemOf("PRIVATE KEY", pkcs8(t, testKeys()[0].priv)), testKeys()[0].priv},
		{"PKCS8 v2 DER Ed25519 with its public key", ed25519OneAsymmetricKey(t, testKeys()[0].priv.(ed25519.PrivateKey)), testKeys()[0].priv},
		{"PKCS8 PEM P384", pemOf("PRIVATE KEY", pkcs8(t, testKeys()[2].priv)), testKeys()[2].priv},
		{"PKCS1 DER", x509.MarshalPKCS1PrivateKey(rsaKey), rsaKey},
		{"PKCS1 PEM", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), rsaKey},
		{"SEC1 DER", sec1, ecKey},
		{"SEC1 PEM after EC PARAMETERS", append(params, pemOf("EC PRIVATE KEY", sec1)...), ecKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := bytes.Clone(tc.in)
			h, err := ReadPrivateKey(s, oneByteReader{bytes.NewReader(in)})
			if err != nil {
				t.Fatal(err)
			}
			var stored []byte
			BorrowViewSlice(s, h, func(b []byte) error { stored = bytes.Clone(b); return nil })
			if want := pkcs8(t, tc.key); !bytes.Equal(stored, want) {
				t.Fatal("entry is not the key's PKCS#8 DER")
			}
			sg, err := NewSigner(s, h)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(sg.Public()) {
				t.Fatal("wrong public key")
			}
		})
	}
	for name, in := range map[string][]byte{
		"empty":        nil,
		"garbage":      []byte("garbage"),
		"PEM no key":   params,
		"bad PEM":      []byte("-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n"),
		"encrypted":    pemOf("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}),
		"DEK-Info":     pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1}}),
		"too large":    bytes.Repeat([]byte{'a'}, maxKeyFile+1),
		"unsupported":  pkcs8(t, mustP224(t)),
		"public key":   pemOf("PUBLIC KEY", []byte{1}),
		"cert as text": []byte(strings.Repeat("x", 100)),
		"Ed25519 RSA":  pemOf("RSA PRIVATE KEY", pkcs8(t, testKeys()[0].priv)),
		"PKCS1 as P8":  pemOf("PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)),
		"SEC1 as P8":   pemOf("PRIVATE KEY", sec1),
		"two keys":     append(pemOf("PRIVATE KEY", pkcs8(t, testKeys()[0].priv)), pemOf("EC PRIVATE KEY", sec1)...),
		"then sealed":  append(pemOf("EC PRIVATE KEY", sec1), pemOf("ENCRYPTED PRIVATE KEY", []byte{1})...),
	} {
		if _, err := ReadPrivateKey(s, bytes.NewReader(in)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%s: %v, want ErrInvalidKey", name, err)
		}
	}
	if _, err := ReadPrivateKey(s, nil); !errors.Is(err, ErrNilArgument) {
		t.Errorf("nil reader: %v", err)
	}
	boom := errors.New("boom")
	if _, err := ReadPrivateKey(s, io.MultiReader(bytes.NewReader([]byte("abc")), errReader{boom})); !errors.Is(err, boom) {
		t.Errorf("reader error: %v", err)
	}
	if st := s.Stats(); st.Rented+st.Viewed != 0 {
		t.Errorf("%d entries left rented", st.Rented+st.Viewed)
	}
}

// ed25519OneAsymmetricKey is key as RFC 8410's second example encodes
// one: a OneAsymmetricKey (RFC 5958) of version 2 with the public key.
func ed25519OneAsymmetricKey(t *testing.T, key ed25519.PrivateKey) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cryptobyte_asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1)
		b.AddASN1(cryptobyte_asn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidEd25519)
		})
		b.AddASN1(cryptobyte_asn1.OCTET_STRING, func(b *cryptobyte.Builder) {
			b.AddASN1OctetString(key.Seed())
		})
		b.AddASN1(cryptobyte_asn1.Tag(1).ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddUint8(0) // no unused bits
			b.AddBytes(key[ed25519.SeedSize:])
		})
	})
	der, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func mustP224(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestReadPrivateKeyBadReader: a reader that reports an impossible count
// or panics gives an error, never a panic, and leaves no entry behind.
func TestReadPrivateKeyBadReader(t *testing.T) {
	tests := []struct {
		name string
		r    readerFunc
		want error
	}{
		{"count past len(p)", func(p []byte) (int, error) { return len(p) + 1, nil }, ErrInvalidCount},
		{"negative count", func(p []byte) (int, error) { return -1, nil }, ErrInvalidCount},
		{"panics", func(p []byte) (int, error) { panic("reader bug") }, ErrPanicked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTest(t)
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("ReadPrivateKey panicked: %v", p)
					}
				}()
				_, err = ReadPrivateKey(s, tt.r)
			}()
			if !errors.Is(err, tt.want) {
				t.Fatalf("ReadPrivateKey: %v, want an error matching %v", err, tt.want)
			}
			if st := s.Stats(); st.Entries != 0 {
				t.Fatalf("%d entries left behind", st.Entries)
			}
		})
	}
}

// TestReadPrivateKeyStuckReader: a reader that returns (0, nil) forever
// gets io.ErrNoProgress, as in ReadAll. The reader fails by itself after
// 100000 empty reads, so the test ends either way.
func TestReadPrivateKeyStuckReader(t *testing.T) {
	s := newTest(t)
	calls := 0
	_, err := ReadPrivateKey(s, readerFunc(func(p []byte) (int, error) {
		if calls++; calls > 100000 {
			return 0, errors.New("still called after 100000 empty reads")
		}
		return 0, nil
	}))
	if !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("ReadPrivateKey: %v, want io.ErrNoProgress", err)
	}
}

// TestSignECDSAScalarOutOfRange: an entry whose EC scalar was zeroed or
// set past the curve order gives ErrInvalidKey and no signature, not
// crypto/ecdsa's error, which matches no sentinel.
func TestSignECDSAScalarOutOfRange(t *testing.T) {
	s := newTest(t)
	key := testKeys()[1].priv.(*ecdsa.PrivateKey)
	der := pkcs8(t, key)
	d, err := key.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(der, d)
	if at < 0 {
		t.Fatal("scalar not found in the PKCS#8 DER")
	}
	h, err := CopyFrom(s, bytes.Clone(der))
	if err != nil {
		t.Fatal(err)
	}
	sg, err := NewSigner(s, h)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("msg"))
	for name, fill := range map[string]byte{"zero": 0, "past the order": 0xff} {
		BorrowSlice(s, h, func(b []byte) error {
			for i := range d {
				b[at+i] = fill
			}
			return nil
		})
		sig, err := sg.Sign(rand.Reader, digest[:], crypto.SHA256)
		if !errors.Is(err, ErrInvalidKey) || sig != nil {
			t.Errorf("%s: Sign = %x, %v; want nil, ErrInvalidKey", name, sig, err)
		}
	}
}

// TestReadPrivateKeyEd25519MatchesX509: ReadPrivateKey reads an Ed25519
// key without crypto/x509, and for mutations of an Ed25519 key's PKCS#8
// DER (a byte changed, dropped or added, the input cut short) never
// accepts what reading it with crypto/x509 refuses, and stores what
// crypto/x509 would when both accept. It refuses some that crypto/x509
// reads, which RFC 8410 and 5958 do not allow (another version, bytes
// after the key or after the seed): crypto/x509 copied their seeds to the
// heap where no wipe reaches. What both encodings of the key itself give,
// it must accept.
func TestReadPrivateKeyEd25519MatchesX509(t *testing.T) {
	s := newTest(t)
	base := pkcs8(t, testKeys()[0].priv)
	v2 := ed25519OneAsymmetricKey(t, testKeys()[0].priv.(ed25519.PrivateKey))
	rng := mathrand.New(mathrand.NewPCG(1, 2))
	mutate := func(in []byte) []byte {
		b := bytes.Clone(in)
		switch rng.IntN(4) {
		case 0:
			b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
		case 1:
			i := rng.IntN(len(b))
			b = append(b[:i], b[i+1:]...)
		case 2:
			i := rng.IntN(len(b) + 1)
			b = append(b[:i], append([]byte{byte(rng.IntN(256))}, b[i:]...)...)
		default:
			b = b[:rng.IntN(len(b))]
		}
		return b
	}
	accepted, own, stricter := 0, 0, 0
	for i := range 3002 {
		var in []byte
		switch i {
		case 3000:
			in = bytes.Clone(base)
		case 3001:
			in = bytes.Clone(v2)
		default:
			in = mutate(base)
			if i%2 == 1 {
				in = mutate(v2)
			}
		}
		var want []byte
		if key, err := x509.ParsePKCS8PrivateKey(in); err == nil {
			if ed, ok := key.(ed25519.PrivateKey); ok && !keyIsZero(ed.Seed()) {
				want, _ = x509.MarshalPKCS8PrivateKey(ed)
			}
		}
		isEd := pkcs8IsEd25519(in)
		if !isEd && want == nil {
			continue // another kind of key or none: the path is x509's as before
		}
		if isEd {
			own++
		}
		h, err := ReadPrivateKey(s, bytes.NewReader(in))
		switch {
		case want == nil && err == nil:
			t.Fatalf("ReadPrivateKey accepted %x, which crypto/x509 refuses", in)
		case want != nil && err != nil:
			if i >= 3000 {
				t.Fatalf("ReadPrivateKey refused the key as encoded %s: %v", map[bool]string{true: "with its public key (v2)", false: "by crypto/x509"}[i == 3001], err)
			}
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("ReadPrivateKey refused %x with %v, want ErrInvalidKey", in, err)
			}
			stricter++
		case want != nil:
			accepted++
			var got []byte
			BorrowViewSlice(s, h, func(b []byte) error { got = bytes.Clone(b); return nil })
			if !bytes.Equal(got, want) {
				t.Fatalf("ReadPrivateKey stored %x for %x, crypto/x509 gives %x", got, in, want)
			}
			s.Free(h)
		}
	}
	if accepted < 2 || own == 0 {
		t.Fatalf("%d mutations accepted, %d read without crypto/x509: the test compared too little", accepted, own)
	}
	t.Logf("of 3000 mutations and the 2 encodings: %d accepted by both, %d refused that crypto/x509 reads, %d with the Ed25519 algorithm", accepted, stricter, own)
}

// TestWipeBigClearsWords: wipeBig, which wipeKey uses on an ECDSA
// key's D and an RSA key's primes, zeroes the words of the backing array,
// not only the length (SetInt64(0) alone leaves them).
func TestWipeBigClearsWords(t *testing.T) {
	x := new(big.Int).SetBytes(bytes.Repeat([]byte{0xab}, 48))
	w := x.Bits()
	w = w[:cap(w)]
	wipeBig(x)
	if x.Sign() != 0 {
		t.Fatal("not zero")
	}
	for i, v := range w {
		if v != 0 {
			t.Fatalf("word %d of the big.Int left: %x", i, v)
		}
	}
}

// pssOpts and pssDigest are what the RSA-PSS tests sign: RSA-PSS reads
// its salt from rand during the signature, where a test's rand can act.
var (
	pssOpts   = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	pssDigest = sha256.Sum256([]byte("message"))
)

// rsaPSSSigner stores the test RSA key in s and returns it, its entry and
// a Signer of it.
func rsaPSSSigner(t *testing.T, s *Shuffler) (*rsa.PrivateKey, Handle, crypto.Signer) {
	t.Helper()
	var key *rsa.PrivateKey
	for _, k := range testKeys() {
		if rk, ok := k.priv.(*rsa.PrivateKey); ok {
			key = rk
		}
	}
	h, err := CopyFrom(s, pkcs8(t, key))
	if err != nil {
		t.Fatal(err)
	}
	sg, err := NewSigner(s, h)
	if err != nil {
		t.Fatal(err)
	}
	return key, h, sg
}

// TestRSASignSealsEntryFirst checks that an RSA signature with a key of
// the pool runs with the entry sealed again: another goroutine can rent
// the entry while crypto/rsa computes (here, while it reads its PSS salt
// from rand), both the first signature, which parses the pool's key, and
// the next, which reuses it. Held under the view, the entry stayed
// decrypted for as long as overlapping signatures went on.
func TestRSASignSealsEntryFirst(t *testing.T) {
	s := newTest(t)
	key, h, sg := rsaPSSSigner(t, s)
	for i := range 2 {
		var rentErr error
		reads := 0
		r := readerFunc(func(p []byte) (int, error) {
			if reads++; reads == 1 {
				var b []byte
				if b, rentErr = RentSlice[byte](s, h); rentErr == nil {
					if !bytes.Equal(b, pkcs8(t, key)) {
						t.Error("the entry rented during the signature does not hold the key")
					}
					rentErr = s.Return(h)
				}
			}
			return rand.Read(p)
		})
		sig, err := sg.Sign(r, pssDigest[:], pssOpts)
		if err != nil {
			t.Fatalf("signature %d: %v", i, err)
		}
		verify(t, key.Public(), pssDigest[:], sig, pssOpts)
		if reads == 0 {
			t.Fatalf("signature %d: crypto/rsa read no salt", i)
		}
		if rentErr != nil {
			t.Errorf("signature %d: renting the entry while crypto/rsa signs: %v, want it sealed and free", i, rentErr)
		}
	}
	if err := s.checkInvariants(); err != nil {
		t.Fatal(err)
	}
}

// TestRSASignOvertakenByPurge: a Purge during an RSA signature with the
// pool's key, which runs after the view ends (here called from the
// RSA-PSS rand, the caller's code), fails Sign with ErrClosed and no
// signature, as a Purge during any other Signer's signature does.
func TestRSASignOvertakenByPurge(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, _, sg := rsaPSSSigner(t, s)
	purged := false
	r := readerFunc(func(p []byte) (int, error) {
		if !purged {
			purged = true
			if err := s.Purge(); err != nil {
				t.Errorf("purge: %v", err)
			}
		}
		return rand.Read(p)
	})
	sig, err := sg.Sign(r, pssDigest[:], pssOpts)
	if !purged {
		t.Fatal("crypto/rsa read no salt")
	}
	if !errors.Is(err, ErrClosed) || sig != nil {
		t.Errorf("Sign overtaken by Purge: %d bytes of signature, %v; want none and ErrClosed", len(sig), err)
	}
}

// TestSignerECDSAScalarEncodings: an ECDSA Signer made from a key whose
// scalar is encoded at the curve's full length signs with the same key
// encoded without its leading zero byte, as older SEC 1 encoders wrote it
// and crypto/x509 parses it, and the other way round: it is no other key.
func TestSignerECDSAScalarEncodings(t *testing.T) {
	s := newTest(t)
	// A key whose scalar has a leading zero byte: one in 256.
	var priv *ecdsa.PrivateKey
	var d []byte
	for {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if d, err = k.Bytes(); err != nil {
			t.Fatal(err)
		}
		if d[0] == 0 {
			priv = k
			break
		}
	}
	padded := pkcs8(t, priv)
	// Re-encode with the scalar stripped of its leading zero, as SEC 1
	// encoders of old did, and as crypto/x509 parses.
	type ecPriv struct {
		Version       int
		PrivateKey    []byte
		NamedCurveOID asn1.ObjectIdentifier `asn1:"optional,explicit,tag:0"`
		PublicKey     asn1.BitString        `asn1:"optional,explicit,tag:1"`
	}
	type pkcs8s struct {
		Version int
		Algo    struct {
			Algorithm  asn1.ObjectIdentifier
			Parameters asn1.RawValue
		}
		PrivateKey []byte
	}
	var p8 pkcs8s
	if _, err := asn1.Unmarshal(padded, &p8); err != nil {
		t.Fatal(err)
	}
	var ec ecPriv
	if _, err := asn1.Unmarshal(p8.PrivateKey, &ec); err != nil {
		t.Fatal(err)
	}
	ec.PrivateKey = trimZeros(d)
	inner, err := asn1.Marshal(ec)
	if err != nil {
		t.Fatal(err)
	}
	p8.PrivateKey = inner
	stripped, err := asn1.Marshal(p8)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := x509.ParsePKCS8PrivateKey(stripped); err != nil || !k.(*ecdsa.PrivateKey).Equal(priv) {
		t.Fatalf("stripped encoding does not parse to the key: %v", err)
	}
	digest := sha256.Sum256([]byte("m"))
	for _, pair := range [][2][]byte{{padded, stripped}, {stripped, padded}} {
		h, err := CopyFrom(s, append([]byte(nil), pair[0]...))
		if err != nil {
			t.Fatal(err)
		}
		sg, err := NewSigner(s, h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sg.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
			t.Fatal(err)
		}
		s.Free(h)
		h2, err := CopyFrom(s, append([]byte(nil), pair[1]...))
		if err != nil {
			t.Fatal(err)
		}
		sg.(*signer).h = h2
		_, err = sg.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Errorf("made from %d-byte DER, the same key in %d bytes: %v", len(pair[0]), len(pair[1]), err)
		}
		s.Free(h2)
	}
}

// TestSignerPublicIsACopy: a caller that changes the public key Public gave
// it changes neither what later calls of Public return nor what Sign signs
// with. Public used to hand out the Signer's own Ed25519 public half, which
// Sign builds the key from: after the caller flipped one of its bits, Sign
// signed the same message with the same nonce and another public half,
// signatures that did not verify and, with an earlier one, gave away the
// private scalar (S1 - S2 = (h1 - h2)s).
func TestSignerPublicIsACopy(t *testing.T) {
	for _, k := range testKeys() {
		t.Run(k.name, func(t *testing.T) {
			s := newTest(t)
			sg := newTestSigner(t, s, k.priv)
			orig := k.priv.Public().(interface{ Equal(crypto.PublicKey) bool })
			switch pub := sg.Public().(type) {
			case ed25519.PublicKey:
				pub[0] ^= 1
			case *ecdsa.PublicKey:
				//lint:ignore SA1019 the caller's change of the key, which this test makes
				pub.X.Add(pub.X, big.NewInt(1))
			case *rsa.PublicKey:
				pub.N.Add(pub.N, big.NewInt(2))
				pub.E = 3
			default:
				t.Fatalf("Public returned %T", pub)
			}
			if !orig.Equal(sg.Public()) {
				t.Errorf("Public returned the key as the caller changed it")
			}
			msg := []byte("message")
			digest, opts := msg, crypto.SignerOpts(crypto.Hash(0))
			if _, ok := k.priv.(ed25519.PrivateKey); !ok {
				d := sha256.Sum256(msg)
				digest, opts = d[:], crypto.SHA256
			}
			sig, err := sg.Sign(rand.Reader, digest, opts)
			if err != nil {
				t.Fatalf("Sign after the caller changed its copy of the key: %v", err)
			}
			switch pub := k.priv.Public().(type) {
			case ed25519.PublicKey:
				if !ed25519.Verify(pub, msg, sig) {
					t.Errorf("the signature does not verify under the key")
				}
			case *ecdsa.PublicKey:
				if !ecdsa.VerifyASN1(pub, digest, sig) {
					t.Errorf("the signature does not verify under the key")
				}
			case *rsa.PublicKey:
				if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, sig); err != nil {
					t.Errorf("the signature does not verify under the key: %v", err)
				}
			}
		})
	}
}

// TestReadPrivateKeyRefusesBytesAfterTheKey: input with bytes after the
// key's DER fails with ErrInvalidKey, as input with two keys must. The
// parsers of crypto/x509 ignore what follows a key, and ReadPrivateKey
// stored the first of two keys one after the other, in DER or in one PEM
// block, and dropped the second unseen.
func TestReadPrivateKeyRefusesBytesAfterTheKey(t *testing.T) {
	s := newTest(t)
	ed := pkcs8(t, testKeys()[0].priv)
	p8 := pkcs8(t, testKeys()[1].priv)
	sec1a, _ := x509.MarshalECPrivateKey(testKeys()[1].priv.(*ecdsa.PrivateKey))
	sec1b, _ := x509.MarshalECPrivateKey(testKeys()[2].priv.(*ecdsa.PrivateKey))
	rsa1 := x509.MarshalPKCS1PrivateKey(testKeys()[4].priv.(*rsa.PrivateKey))
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"Ed25519 PKCS#8, a byte after", append(bytes.Clone(ed), 0)},
		{"P-256 PKCS#8, a byte after", append(bytes.Clone(p8), 0)},
		{"PKCS#1, a byte after", append(bytes.Clone(rsa1), 0)},
		{"two PKCS#8 keys", append(bytes.Clone(p8), ed...)},
		{"two SEC 1 keys", append(bytes.Clone(sec1a), sec1b...)},
		{"two PKCS#8 keys in one PEM block", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: append(bytes.Clone(p8), ed...)})},
		{"two SEC 1 keys in one PEM block", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: append(bytes.Clone(sec1a), sec1b...)})},
	} {
		if h, err := ReadPrivateKey(s, bytes.NewReader(tc.in)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%s: ReadPrivateKey = %v, %v; want ErrInvalidKey", tc.name, h, err)
		}
	}
	if n := s.Stats().Entries; n != 0 {
		t.Errorf("%d entries made", n)
	}
}

// TestReadPrivateKeyWrappedEOFIsAnError: a reader whose error wraps io.EOF
// fails ReadPrivateKey with that error, as it fails ReadAll: io.EOF itself
// is the end of the input, an error wrapping it a failure of the reader.
// ReadPrivateKey took any error matching io.EOF for the end and imported
// what it had read.
func TestReadPrivateKeyWrappedEOFIsAnError(t *testing.T) {
	s := newTest(t)
	cut := fmt.Errorf("stream cut: %w", io.EOF)
	r := io.MultiReader(bytes.NewReader(pkcs8(t, testKeys()[0].priv)), errReader{cut})
	h, err := ReadPrivateKey(s, r)
	if !errors.Is(err, cut) {
		t.Fatalf("ReadPrivateKey = %v, %v; want the reader's error", h, err)
	}
	if _, err := ReadAll(s, io.MultiReader(bytes.NewReader([]byte("x")), errReader{cut}), maxKeyFile); !errors.Is(err, cut) {
		t.Fatalf("ReadAll = %v; want the reader's error", err)
	}
}
