package memshuffle

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/memshuffle/memshuffle/internal/aesctr"
)

// TestKeysRandomAndWiped: every Shuffler draws its own key, counter start
// and shuffle seeds from crypto/rand, and the buffer a key is assembled in
// holds nothing once the key is expanded, after New and after RotateKey
// with a fresh key or the caller's. A key written there as a constant, a
// counter space started at zero, a fixed shuffle seed, or a key left
// where it was assembled each passed the whole -short suite.
func TestKeysRandomAndWiped(t *testing.T) {
	for _, c := range []Cipher{AES256CTR, AES256GCM, ChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			a := newTest(t, WithCipher(c), WithShards(2))
			b := newTest(t, WithCipher(c), WithShards(2))
			assembled := func(s *Shuffler, when string) {
				t.Helper()
				if buf := s.own.Data[:ownState]; !bytes.Equal(buf, make([]byte, ownState)) {
					t.Errorf("%s: the buffer the key is assembled in is not wiped: %x", when, buf)
				}
			}
			assembled(a, "after New")
			assembled(b, "after New")
			if a.ctrs.Next() == b.ctrs.Next() {
				t.Errorf("two Shufflers start their counters at the same value %#x", a.ctrs.Next())
			}
			if x, y := a.shards[0].rng.Uint64(), b.shards[0].rng.Uint64(); x == y {
				t.Errorf("two Shufflers' first shards draw the same first number %#x", x)
			}
			if c == AES256CTR && aesctr.Supported() {
				distinctRoundKeys(t, a, b)
			}
			if err := a.RotateKey(nil, nil); err != nil {
				t.Fatal(err)
			}
			assembled(a, "after RotateKey(nil, nil)")
			if c == AES256CTR && aesctr.Supported() {
				distinctRoundKeys(t, a, b)
			}
			var key [32]byte
			var salt [8]byte
			rand.Read(key[:])
			rand.Read(salt[:])
			if err := a.RotateKey(&key, &salt); err != nil {
				t.Fatal(err)
			}
			assembled(a, "after RotateKey with the caller's key")
		})
	}
}

// distinctRoundKeys fails t where the round keys of a's and b's current CTR
// keys have a block in common, or a block of zeros: for two keys drawn at
// random neither happens.
func distinctRoundKeys(t *testing.T, a, b *Shuffler) {
	t.Helper()
	ka := a.cipherState(a.cipherSlot)[:aesctr.RoundKeysSize]
	kb := b.cipherState(b.cipherSlot)[:aesctr.RoundKeysSize]
	zero := make([]byte, 16)
	for i := 0; i < len(ka); i += 16 {
		x, y := ka[i:i+16], kb[i:i+16]
		if bytes.Equal(x, zero) || bytes.Equal(y, zero) {
			t.Fatalf("round key %d is zero", i/16)
		}
		if bytes.Equal(x, y) {
			t.Fatalf("two Shufflers share round key %d: %x", i/16, x)
		}
	}
}
