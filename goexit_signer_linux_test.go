package memshuffle

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"io"
	"math/big"
	"runtime/debug"
	"slices"
	"testing"

	"github.com/memshuffle/memshuffle/internal/memscan"
	"github.com/memshuffle/memshuffle/internal/stacktest"
)

// signerMade is a Signer of a key in an entry, patterns of the key's
// key-equivalent forms, and the first form inverted, for the control.
type signerMade struct {
	sg  crypto.Signer
	ps  []*memscan.Pattern
	inv []byte
}

// beLE returns n's big-endian bytes, size long, and its 64-bit words in
// little-endian order as math/big holds them (the low 24 bytes).
func beLE(n *big.Int, size int) (be, le []byte) {
	be = n.FillBytes(make([]byte, size))
	le = slices.Clone(be[len(be)-24:])
	slices.Reverse(le)
	return be[:32], le
}

// signerKeyAndPatterns makes a key of kind in an entry of s and a Signer
// of it. Its frames hold the key: call it in scrubbed (inScrubbedFrames).
//
//go:noinline
func signerKeyAndPatterns(s *Shuffler, kind string) (m signerMade, err error) {
	var key any
	var forms [][]byte
	switch kind {
	case "Ed25519":
		_, ed, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return m, err
		}
		defer Wipe(ed)
		sum := sha512.Sum512(ed[:ed25519.SeedSize])
		defer Wipe(sum[:])
		key, forms = ed, [][]byte{slices.Clone(ed[:ed25519.SeedSize]), slices.Clone(sum[:32]), slices.Clone(sum[32:])}
	case "ECDSA":
		ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return m, err
		}
		defer wipeKey(ec)
		//lint:ignore SA1019 the scalar's forms
		be, le := beLE(ec.D, 32)
		key, forms = ec, [][]byte{be, le}
	default:
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return m, err
		}
		defer wipeKey(rk)
		for _, n := range []*big.Int{rk.D, rk.Primes[0], rk.Primes[1]} {
			be, le := beLE(n, (n.BitLen()+7)/8)
			forms = append(forms, be, le)
		}
		key = rk
	}
	defer func() {
		for _, f := range forms {
			Wipe(f)
		}
	}()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return m, err
	}
	h, err := CopyFrom(s, der) // wipes der
	if err != nil {
		return m, err
	}
	if m.sg, err = NewSigner(s, h); err != nil {
		return m, err
	}
	for _, f := range forms {
		p, err := memscan.NewPattern(f)
		if err != nil {
			return m, err
		}
		m.ps = append(m.ps, p)
	}
	m.inv = slices.Clone(forms[0])
	for i := range m.inv {
		m.inv[i] = ^m.inv[i]
	}
	return m, nil
}

func madeSigner(t *testing.T, s *Shuffler, kind string) signerMade {
	t.Helper()
	return inScrubbedFrames(t, func() (signerMade, error) { return signerKeyAndPatterns(s, kind) })
}

// TestGoexitSignerLeavesNoKey: a Sign whose rand, or opts' HashFunc, ends
// its goroutine (runtime.Goexit, a panic, panic(nil)) leaves no more
// copies of the key's key-equivalent forms in the process than a Sign
// that returns. The garbage collector is off, so that nothing freed is
// reused before the scan.
func TestGoexitSignerLeavesNoKey(t *testing.T) {
	skipScanUnderRace(t)
	if raceBuild {
		t.Skip("the race detector's instrumentation changes the frames")
	}
	// ECDSA reads rand only so.
	t.Setenv("GODEBUG", "cryptocustomrand=1")
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	digest := sha256.Sum256([]byte("message"))
	pss := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	type sc struct {
		kind, name string
		msg        []byte
		opts       func(end func()) crypto.SignerOpts
		rand       func(end func()) io.Reader
	}
	var cases []sc
	for _, kind := range []string{"Ed25519", "ECDSA", "RSA PKCS #1 v1.5", "RSA-PSS"} {
		msg := digest[:]
		var o crypto.SignerOpts = crypto.SHA256
		if kind == "Ed25519" {
			msg, o = []byte("message"), crypto.Hash(0)
		}
		if kind == "RSA-PSS" {
			o = pss
		}
		oo := o
		if kind != "RSA-PSS" {
			cases = append(cases, sc{kind, "HashFunc", msg,
				func(end func()) crypto.SignerOpts { return endingOpts{end} },
				func(func()) io.Reader { return rand.Reader }})
		}
		if kind != "Ed25519" {
			cases = append(cases, sc{kind, "rand", msg,
				func(func()) crypto.SignerOpts { return oo },
				func(end func()) io.Reader { return endingRand{end} }})
		}
	}
	for _, c := range cases {
		for _, e := range endings {
			t.Run(c.kind+"/"+c.name+"/"+e.name, func(t *testing.T) {
				if testing.Short() && e.name != "Goexit" {
					// A panic unwinds through the call's defers; Goexit
					// is the ending the others' tests do not cover.
					t.Skip("-short: Goexit only (each case makes a key, an RSA one in seconds)")
				}
				s := newTest(t)
				m := madeSigner(t, s, c.kind)
				normal := func() {
					onGoroutine(t, func() {
						opts := c.opts(func() {})
						if c.name == "HashFunc" {
							opts = crypto.SHA256
							if c.kind == "Ed25519" {
								opts = crypto.Hash(0)
							}
						}
						if _, err := m.sg.Sign(rand.Reader, c.msg, opts); err != nil {
							t.Error(err)
						}
					})
				}
				normal() // the pool's key, the caches
				normal()
				before := stacktest.Count(t, m.ps, false)
				normal()
				mid := stacktest.Count(t, m.ps, false)
				reached := false
				end := func() { reached = true; e.end() }
				onGoroutine(t, func() { _, _ = m.sg.Sign(c.rand(end), c.msg, c.opts(end)) })
				if !reached {
					t.Skipf("%s is not called", c.name)
				}
				after := stacktest.Count(t, m.ps, true)
				t.Logf("%d copies before, %d after a Sign that returns, %d after one whose %s ends it", before, mid, after, c.name)
				if after > mid {
					t.Errorf("%d more copies of the key after a Sign whose %s ended its goroutine with %s", after-mid, c.name, e.name)
				}
				// The turn given back, nothing borrowed.
				for range 3 {
					normal()
				}
				if st := s.Stats(); st.Rented != 0 || st.Viewed != 0 {
					t.Errorf("%d rented, %d viewed; want none", st.Rented, st.Viewed)
				}
				planted := slices.Clone(m.inv)
				for i := range planted {
					planted[i] = ^planted[i]
				}
				if n := stacktest.Count(t, m.ps[:1], false); n == 0 {
					t.Error("control: the planted copy was not found")
				}
				Wipe(planted)
			})
		}
	}
}
