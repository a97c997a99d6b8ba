package memshuffle

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/fips140"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"testing"
)

// TestFIPSOnly runs, in a child process under GODEBUG=fips140=only, what
// the FIPS 140-only mode changes: the default Shuffler works, and what
// crypto/cipher and crypto/hmac refuse there is refused with a typed error
// (ErrUnsupported, ErrInvalidKey), never a panic or an error that blames
// the key for the policy.
func TestFIPSOnly(t *testing.T) {
	inChildEnv(t, []string{"GODEBUG=fips140=only"}, func(t *testing.T) {
		if !fips140.Enforced() {
			t.Fatal("the child does not run in the FIPS 140-only mode")
		}
		t.Run("default", func(t *testing.T) {
			s := newTest(t)
			h, err := CopyFrom(s, []byte("a secret of the FIPS-only mode"))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.RotateKey(nil, nil); err != nil {
				t.Fatal("RotateKey:", err)
			}
			mustHold(t, s, h, []byte("a secret of the FIPS-only mode"))
		})
		for _, c := range []Cipher{AES256GCM, ChaCha20Poly1305} {
			t.Run(c.String(), func(t *testing.T) {
				s, err := New(WithCipher(c))
				if err == nil {
					s.Close()
				}
				if !errors.Is(err, ErrUnsupported) || !errors.Is(err, errors.ErrUnsupported) {
					t.Fatalf("New(WithCipher(%v)) = %v, want ErrUnsupported", c, err)
				}
			})
		}
		t.Run("AEAD", func(t *testing.T) {
			s := newTest(t)
			key := bytes.Repeat([]byte{7}, 32)
			h, err := CopyFrom(s, bytes.Clone(key))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := NewAEAD(s, h); !errors.Is(err, ErrUnsupported) {
				t.Fatalf("NewAEAD = %v, want ErrUnsupported", err)
			}
			// Made and used where enforcement is lifted it works; used
			// outside, Seal blames the policy, not the key.
			var a *AEAD
			var want []byte
			nonce := make([]byte, 12)
			fips140.WithoutEnforcement(func() {
				if a, err = NewAEAD(s, h); err != nil {
					return
				}
				block, _ := aes.NewCipher(key)
				g, _ := cipher.NewGCM(block)
				want = g.Seal(nil, nonce, []byte("msg"), nil)
				var got []byte
				if got, err = a.Seal(nil, nonce, []byte("msg"), nil); err == nil && !bytes.Equal(got, want) {
					t.Error("Seal without enforcement differs from crypto/cipher")
				}
			})
			if err != nil {
				t.Fatal("without enforcement:", err)
			}
			if _, err := a.Seal(nil, nonce, []byte("msg"), nil); !errors.Is(err, ErrUnsupported) || errors.Is(err, ErrInvalidKey) {
				t.Fatalf("Seal = %v, want ErrUnsupported", err)
			}
			if _, err := a.Open(nil, nonce, want, nil); !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Open = %v, want ErrUnsupported", err)
			}
		})
		t.Run("Signer", func(t *testing.T) {
			s := newTest(t)
			cases := randSignCases(t)
			digest := sha256.Sum256([]byte("message"))
			// crypto/rand.Reader is what the module accepts: Sign must
			// hand it over as it is, not wrapped.
			for _, tc := range cases {
				sg := newTestSigner(t, s, tc.key)
				sig, err := sg.Sign(rand.Reader, digest[:], tc.opts)
				if err != nil {
					t.Errorf("%s with crypto/rand.Reader: %v", tc.name, err)
					continue
				}
				if !verifies(tc.key, digest[:], sig, tc.opts) {
					t.Errorf("%s: the signature does not verify", tc.name)
				}
			}
			// Any other source is refused there, as the policy's.
			other := struct{ io.Reader }{rand.Reader}
			if _, err := newTestSigner(t, s, cases[1].key).Sign(other, digest[:], cases[1].opts); !errors.Is(err, ErrUnsupported) {
				t.Errorf("RSA-PSS with a reader of the caller's: %v, want ErrUnsupported", err)
			}
		})
		t.Run("MAC", func(t *testing.T) {
			s := newTest(t)
			tests := []struct {
				name    string
				key     []byte
				h       func() hash.Hash
				wantErr error
			}{
				{"SHA-256, 32-byte key", bytes.Repeat([]byte{1}, 32), sha256.New, nil},
				{"SHA-256, 14-byte key", bytes.Repeat([]byte{1}, 14), sha256.New, nil},
				{"SHA-256, 13-byte key", bytes.Repeat([]byte{1}, 13), sha256.New, ErrInvalidKey},
				// ownHash is SHA-256 under a type the FIPS module does not
				// know as approved.
				{"unapproved hash", bytes.Repeat([]byte{1}, 32), func() hash.Hash { return ownHash{sha256.New()} }, ErrUnsupported},
				// The third call is crypto/hmac's, asked whether the
				// hash is approved: a panic there is still the hash's.
				{"hash panics on its third call", bytes.Repeat([]byte{1}, 32), panicsOnCall(3), ErrPanicked},
			}
			for _, tt := range tests {
				h, err := CopyFrom(s, bytes.Clone(tt.key))
				if err != nil {
					t.Fatal(err)
				}
				got, err := MAC(s, h, tt.h, []byte("msg"), nil)
				if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
					t.Errorf("%s: MAC error %v, want %v", tt.name, err, tt.wantErr)
					continue
				}
				if err == nil {
					m := hmac.New(tt.h, tt.key)
					m.Write([]byte("msg"))
					if !hmac.Equal(got, m.Sum(nil)) {
						t.Errorf("%s: MAC differs from crypto/hmac", tt.name)
					}
				}
			}
		})
	})
}

// panicsOnCall returns a hash function that makes SHA-256 hashes and
// panics on its nth call.
func panicsOnCall(n int) func() hash.Hash {
	calls := 0
	return func() hash.Hash {
		if calls++; calls == n {
			panic("no more hashes")
		}
		return sha256.New()
	}
}

// verifies reports whether sig is key's signature of digest under opts.
func verifies(key any, digest, sig []byte, opts crypto.SignerOpts) bool {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return ecdsa.VerifyASN1(&k.PublicKey, digest, sig)
	case *rsa.PrivateKey:
		if p, ok := opts.(*rsa.PSSOptions); ok {
			return rsa.VerifyPSS(&k.PublicKey, p.Hash, digest, sig, p) == nil
		}
		return rsa.VerifyPKCS1v15(&k.PublicKey, opts.HashFunc(), digest, sig) == nil
	}
	return false
}
