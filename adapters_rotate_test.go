package memshuffle

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestAdaptersDuringRotation: Sign, MAC and AEAD from many
// goroutines while RotateKey, WithKeyRotation, Shuffle, background shuffle
// and shuffle-on-return move and re-key entries, in every cipher mode:
// every call must succeed and agree with the standard library.
func TestAdaptersDuringRotation(t *testing.T) {
	_, edk, _ := ed25519.GenerateKey(rand.Reader)
	eck, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsak, _ := rsa.GenerateKey(rand.Reader, 2048)
	macKey := bytes.Repeat([]byte("k"), 100) // longer than a block
	aesKey := bytes.Repeat([]byte("a"), 32)
	block, _ := aes.NewCipher(aesKey)
	gcm, _ := cipher.NewGCM(block)
	for _, c := range []Cipher{AES256CTR, AES256GCM, ChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			defer func(n int) { runtimeGOMAXPROCS(n) }(runtimeGOMAXPROCS(8))
			s := newUnchecked(t, WithCipher(c), WithKeyRotation(time.Millisecond),
				WithBackgroundShuffle(time.Millisecond), WithShuffleOnBorrowReturn(true), WithShards(2))
			signers := map[string]crypto.Signer{}
			for name, k := range map[string]any{"ed25519": edk, "ecdsa": eck, "rsa": rsak} {
				der, _ := x509.MarshalPKCS8PrivateKey(k)
				h, err := CopyFrom(s, der)
				if err != nil {
					t.Fatal(err)
				}
				if signers[name], err = NewSigner(s, h); err != nil {
					t.Fatal(err)
				}
			}
			mk, _ := CopyFrom(s, bytes.Clone(macKey))
			ak, _ := CopyFrom(s, bytes.Clone(aesKey))
			a, err := NewAEAD(s, ak)
			if err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := s.RotateKey(nil, nil); err != nil {
						t.Error("RotateKey:", err)
					}
					if err := s.Shuffle(); err != nil {
						t.Error("Shuffle:", err)
					}
					h, _ := Random(s, 100) // churn for compaction
					s.Free(h)
				}
			})
			msg := []byte("message")
			digest := sha256.Sum256(msg)
			hm := hmac.New(sha256.New, macKey)
			hm.Write(msg)
			wantMAC := hm.Sum(nil)
			var workers sync.WaitGroup
			for g := range 8 {
				workers.Go(func() {
					for i := range 10 {
						var err error
						switch (g + i) % 5 {
						case 0:
							var sig []byte
							if sig, err = signers["ed25519"].Sign(nil, msg, crypto.Hash(0)); err == nil && !ed25519.Verify(edk.Public().(ed25519.PublicKey), msg, sig) {
								err = fmt.Errorf("bad Ed25519 signature")
							}
						case 1:
							var sig []byte
							if sig, err = signers["ecdsa"].Sign(rand.Reader, digest[:], crypto.SHA256); err == nil && !ecdsa.VerifyASN1(&eck.PublicKey, digest[:], sig) {
								err = fmt.Errorf("bad ECDSA signature")
							}
						case 2:
							var sig []byte
							if sig, err = signers["rsa"].Sign(rand.Reader, digest[:], crypto.SHA256); err == nil {
								err = rsa.VerifyPKCS1v15(&rsak.PublicKey, crypto.SHA256, digest[:], sig)
							}
						case 3:
							var m []byte
							if m, err = MAC(s, mk, sha256.New, msg, nil); err == nil && !hmac.Equal(m, wantMAC) {
								err = fmt.Errorf("MAC differs from crypto/hmac")
							}
						case 4:
							nonce := make([]byte, 12)
							rand.Read(nonce)
							var ct, pt []byte
							if ct, err = a.Seal(nil, nonce, msg, nil); err == nil {
								if !bytes.Equal(ct, gcm.Seal(nil, nonce, msg, nil)) {
									err = fmt.Errorf("Seal differs from crypto/cipher")
								} else if pt, err = a.Open(nil, nonce, ct, nil); err == nil && !bytes.Equal(pt, msg) {
									err = fmt.Errorf("Open gave %q", pt)
								}
							}
						}
						if err != nil {
							t.Errorf("worker %d op %d: %v", g, (g+i)%5, err)
							return
						}
					}
				})
			}
			workers.Wait()
			close(stop)
			wg.Wait()
			mustCheck(t, s)
		})
	}
}

func runtimeGOMAXPROCS(n int) int { return runtime.GOMAXPROCS(n) }
