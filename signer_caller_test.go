package memshuffle

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// failingReader fails every read with errRandFailed.
type failingReader struct{}

var errRandFailed = errors.New("the random source failed")

func (failingReader) Read([]byte) (int, error) { return 0, errRandFailed }

// fixedCountReader returns n, and no error, from every read.
type fixedCountReader struct{ n int }

func (r fixedCountReader) Read([]byte) (int, error) { return r.n, nil }

// panickingReader panics on every read.
type panickingReader struct{}

func (panickingReader) Read([]byte) (int, error) { panic("no randomness") }

// TestSignerRandErrors: where crypto/ecdsa and crypto/rsa read the
// caller's rand (under GODEBUG=cryptocustomrand=1), its error is passed on
// and its panic is ErrPanicked, not blamed on the opts; crypto/rand.Reader
// still signs, and a nil rand for RSA-PSS is ErrNilArgument.
func TestSignerRandErrors(t *testing.T) {
	inChildEnv(t, []string{"GODEBUG=cryptocustomrand=1"}, func(t *testing.T) {
		s := newTest(t)
		cases := randSignCases(t)
		digest := sha256.Sum256([]byte("message"))
		rsak, pss := cases[1].key, cases[1].opts
		for _, tc := range cases[:2] { // the two that read rand
			sg := newTestSigner(t, s, tc.key)
			for _, rc := range []struct {
				name string
				rand io.Reader
				want error
			}{
				{"crypto/rand", rand.Reader, nil},
				{"failing", failingReader{}, errRandFailed},
				{"panicking", panickingReader{}, ErrPanicked},
				{"count of -1", fixedCountReader{-1}, ErrInvalidCount},
				{"count past the buffer", fixedCountReader{1 << 20}, ErrInvalidCount},
				{"never progressing", fixedCountReader{0}, io.ErrNoProgress},
				// io.ReadFull's error for it, which matched no error of
				// rand's and was blamed on the opts.
				{"short, then at EOF", io.LimitReader(rand.Reader, 5), io.ErrUnexpectedEOF},
				{"at EOF", io.LimitReader(rand.Reader, 0), io.EOF},
			} {
				_, err := sg.Sign(rc.rand, digest[:], tc.opts)
				if (rc.want == nil) != (err == nil) || !errors.Is(err, rc.want) || (rc.want != nil && errors.Is(err, ErrInvalidOption)) {
					t.Errorf("%s with a %s rand: %v, want %v", tc.name, rc.name, err, rc.want)
				}
			}
		}
		// RSA-PSS reads its salt from rand, in every mode.
		sg := newTestSigner(t, s, rsak)
		if _, err := sg.Sign(nil, digest[:], pss); !errors.Is(err, ErrNilArgument) {
			t.Errorf("RSA-PSS with a nil rand: %v, want ErrNilArgument", err)
		}
		if _, err := sg.Sign((*bytes.Reader)(nil), digest[:], pss); !errors.Is(err, ErrNilArgument) {
			t.Errorf("RSA-PSS with a typed nil rand: %v, want ErrNilArgument", err)
		}
		if _, err := sg.Sign(nil, digest[:], crypto.SHA256); err != nil {
			t.Errorf("RSA PKCS #1 v1.5 with a nil rand: %v", err)
		}
	})
}

// reentrantOpts signs again from inside HashFunc, as opts of the caller's
// may, and names hash.
type reentrantOpts struct {
	sign func()
	hash crypto.Hash
}

func (o reentrantOpts) HashFunc() crypto.Hash { o.sign(); return o.hash }

// TestSignerOptsSignAgain: a Signer whose opts sign with it again from
// HashFunc finishes both signatures instead of waiting for itself for a
// turn of its key pool, which has one turn for Ed25519 and, here, for
// ECDSA and RSA too (made with GOMAXPROCS 1); each signature verifies.
// Only Ed25519 ran HashFunc before its turn; the others waited forever.
func TestSignerOptsSignAgain(t *testing.T) {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cases := append([]signCase{{"Ed25519", edKey, crypto.Hash(0)}}, randSignCases(t)...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTest(t)
			prev := runtime.GOMAXPROCS(1) // a pool of one key
			sg := newTestSigner(t, s, tc.key)
			runtime.GOMAXPROCS(prev)
			hash := tc.opts.HashFunc()
			msg := func(m string) []byte {
				if hash == 0 {
					return []byte(m)
				}
				h := hash.New()
				h.Write([]byte(m))
				return h.Sum(nil)
			}
			var inner, outer []byte
			var innerErr, outerErr error
			opts := reentrantOpts{hash: hash, sign: func() { inner, innerErr = sg.Sign(rand.Reader, msg("inner"), tc.opts) }}
			done := make(chan struct{})
			go func() {
				defer close(done)
				outer, outerErr = sg.Sign(rand.Reader, msg("outer"), opts)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Sign still waiting after 10 s: it waits for itself")
			}
			if innerErr != nil || outerErr != nil {
				t.Fatal(innerErr, outerErr)
			}
			verify(t, sg.Public(), msg("inner"), inner, tc.opts)
			verify(t, sg.Public(), msg("outer"), outer, hash) // PKCS #1 v1.5 for RSA
		})
	}
}

// signCase is a key and the opts to sign with it.
type signCase struct {
	name string
	key  any
	opts crypto.SignerOpts
}

// randSignCases makes a P-256 and an RSA 2048 key and returns, in this
// order, the cases that read rand (ECDSA, where the caller's rand is used,
// and RSA-PSS) and RSA PKCS #1 v1.5, which reads none.
func randSignCases(t *testing.T) []signCase {
	t.Helper()
	eck, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsak, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return []signCase{
		{"ECDSA", eck, crypto.SHA256},
		{"RSA-PSS", rsak, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}},
		{"RSA PKCS #1 v1.5", rsak, crypto.SHA256},
	}
}

// TestSignPSSSaltTooLong: an RSA-PSS salt longer than the key leaves room
// for is ErrInvalidOption before a byte of rand is read or the salt
// allocated; the longest that fits signs.
func TestSignPSSSaltTooLong(t *testing.T) {
	s := newTest(t)
	key := testKeys()[4].priv.(*rsa.PrivateKey)
	sg := newTestSigner(t, s, key)
	digest := sha256.Sum256([]byte("message"))
	room := (key.N.BitLen()-1+7)/8 - 2 - sha256.Size
	for _, salt := range []int{room + 1, 1 << 30, math.MaxInt} {
		rnd := &countingReader{r: rand.Reader}
		_, err := sg.Sign(rnd, digest[:], &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: salt})
		if !errors.Is(err, ErrInvalidOption) || rnd.calls != 0 {
			t.Errorf("salt of %d bytes: %v after %d reads of rand, want ErrInvalidOption and none", salt, err, rnd.calls)
		}
	}
	opts := &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: room}
	sig, err := sg.Sign(rand.Reader, digest[:], opts)
	if err != nil {
		t.Fatalf("salt of %d bytes, the most that fits: %v", room, err)
	}
	if err := rsa.VerifyPSS(&key.PublicKey, crypto.SHA256, digest[:], sig, opts); err != nil {
		t.Errorf("salt of %d bytes: the signature does not verify: %v", room, err)
	}
}

// TestSignerKeyPools: Signers sign from a pool of keys they reuse: an
// Ed25519 Signer from one key buffer, ECDSA and RSA Signers from one key
// while signatures come one at a time and never more than GOMAXPROCS; and
// every signature of many goroutines at once verifies. Each key is one set
// of the copies the standard library keeps (TestAdapterCopies counts
// them). An Ed25519 buffer and an ECDSA key hold no key between
// signatures; an RSA key is parsed once and kept.
func TestSignerKeyPools(t *testing.T) {
	ed := testKeys()[0].priv.(ed25519.PrivateKey)
	ec := testKeys()[1].priv.(*ecdsa.PrivateKey)
	rk := testKeys()[4].priv.(*rsa.PrivateKey)
	digest := sha256.Sum256([]byte("message"))
	procs := runtime.GOMAXPROCS(0)
	cases := []struct {
		name   string
		key    crypto.Signer
		opts   crypto.SignerOpts
		most   int                      // keys the pool may hold
		holds  func(crypto.Signer) bool // a key left in the pool holds the key; nil: kept on purpose
		verify func(sig []byte) bool
	}{
		{"Ed25519", ed, crypto.Hash(0), 1,
			func(key crypto.Signer) bool {
				return !bytes.Equal(key.(ed25519.PrivateKey), make([]byte, ed25519.PrivateKeySize))
			},
			func(sig []byte) bool { return ed25519.Verify(ed.Public().(ed25519.PublicKey), digest[:], sig) }},
		{"ECDSA", ec, crypto.SHA256, procs,
			func(key crypto.Signer) bool {
				//lint:ignore SA1019 checking the scalar the Signer wipes
				return key.(*ecdsa.PrivateKey).D.Sign() != 0
			},
			func(sig []byte) bool { return ecdsa.VerifyASN1(&ec.PublicKey, digest[:], sig) }},
		{"RSA", rk, crypto.SHA256, procs, nil,
			func(sig []byte) bool { return rsa.VerifyPKCS1v15(&rk.PublicKey, crypto.SHA256, digest[:], sig) == nil }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newTest(t)
			sg := newTestSigner(t, s, c.key)
			pool := &sg.(*signer).keys
			check := func(when string, most int) {
				t.Helper()
				n, taken, holding := poolState(pool, c.holds)
				if n < 1 || n > most {
					t.Errorf("%s: %d keys, want 1 to %d", when, n, most)
				}
				if taken != 0 {
					t.Errorf("%s: %d turns still taken after every signature returned", when, taken)
				}
				if holding != 0 {
					t.Errorf("%s: %d keys in the pool still hold the key", when, holding)
				}
			}
			for range 5 {
				if _, err := sg.Sign(rand.Reader, digest[:], c.opts); err != nil {
					t.Fatal(err)
				}
			}
			check("after signatures one at a time", 1)

			var wg sync.WaitGroup
			errs := make(chan error, 4*procs)
			for range 4 * procs {
				wg.Go(func() {
					for range 5 {
						sig, err := sg.Sign(rand.Reader, digest[:], c.opts)
						if err == nil && !c.verify(sig) {
							err = errors.New("a signature does not verify")
						}
						if err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			check(fmt.Sprintf("after %d goroutines signed at once", 4*procs), c.most)
		})
	}
}

// poolState returns how many keys p holds, how many turns are taken, and
// how many of its keys holds reports true for (none, for a nil holds).
func poolState(p *keyPool, holds func(crypto.Signer) bool) (n, taken, holding int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, key := range p.idle {
		if holds != nil && holds(key) {
			holding++
		}
	}
	return len(p.idle), len(p.sem), holding
}

// TestSignerRSAEntryReplaced: an RSA Signer whose entry comes to hold
// another key fails Sign with ErrInvalidKey, since Public would not verify
// what that key signs (it signed with it, parsed for that signature
// alone), keeps the pool's key, and signs with it again once the entry
// holds the first key back.
func TestSignerRSAEntryReplaced(t *testing.T) {
	s := newTest(t)
	// Two keys whose DERs have one length, so that either fits the entry
	// exactly: lengths differ by a byte or two with the sizes of the
	// numbers, and take a handful of values, so that a few keys made
	// share one (waiting for one to match a given key could take more
	// than 50: it failed so once).
	var first, second *rsa.PrivateKey
	var der1, der2 []byte
	byLen := map[int]*rsa.PrivateKey{}
	for range 50 {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		der := pkcs8(t, k)
		if other := byLen[len(der)]; other != nil {
			first, der1, second, der2 = other, pkcs8(t, other), k, der
			break
		}
		byLen[len(der)] = k
	}
	if second == nil {
		t.Fatalf("no two of 50 keys have DERs of one length: %d lengths", len(byLen))
	}
	h, err := CopyFrom(s, slices.Clone(der1)) // which wipes its source
	if err != nil {
		t.Fatal(err)
	}
	sg, err := NewSigner(s, h)
	if err != nil {
		t.Fatal(err)
	}
	put := func(der []byte) {
		t.Helper()
		if err := BorrowSlice(s, h, func(b []byte) error { copy(b, der); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	digest := sha256.Sum256([]byte("message"))
	signs := func(pub *rsa.PublicKey) bool {
		t.Helper()
		sig, err := sg.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		return rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) == nil
	}
	if !signs(&first.PublicKey) {
		t.Fatal("the first key's signature does not verify")
	}
	put(der2)
	if sig, err := sg.Sign(rand.Reader, digest[:], crypto.SHA256); !errors.Is(err, ErrInvalidKey) || sig != nil {
		t.Errorf("with the entry replaced by another key: %x, %v; want ErrInvalidKey", sig, err)
	}
	if n, _, _ := poolState(&sg.(*signer).keys, nil); n != 1 {
		t.Errorf("%d keys in the pool after a Sign with another key, want the first key's 1", n)
	}
	put(der1)
	if !signs(&first.PublicKey) {
		t.Error("with the first key back, Sign did not sign with it")
	}
}

// panickingOpts' HashFunc panics, as opts of the caller's may.
type panickingOpts struct{}

func (panickingOpts) HashFunc() crypto.Hash { panic("opts bug") }

// TestSignerOptsPanic: opts whose HashFunc panics fail Sign with an error
// matching ErrPanicked, as other code of the caller's that panics does,
// and ErrInvalidOption, for every kind of key; the Signer signs after it.
func TestSignerOptsPanic(t *testing.T) {
	s := newTest(t)
	for _, k := range testKeys() {
		sg := newTestSigner(t, s, k.priv)
		_, err := sg.Sign(rand.Reader, make([]byte, 32), panickingOpts{})
		if !errors.Is(err, ErrPanicked) || !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), "opts bug") {
			t.Errorf("%s: %v, want an error matching ErrPanicked and ErrInvalidOption with the panic's value", k.name, err)
		}
		opts, msg := crypto.SignerOpts(crypto.SHA256), make([]byte, 32)
		if _, ok := k.priv.(ed25519.PrivateKey); ok {
			opts = crypto.Hash(0)
		}
		sig, err := sg.Sign(rand.Reader, msg, opts)
		if err != nil {
			t.Fatalf("%s: signing after the panic: %v", k.name, err)
		}
		verify(t, sg.Public(), msg, sig, opts)
	}
	if err := s.checkInvariants(); err != nil {
		t.Fatal(err)
	}
}
