package memshuffle

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"
)

// BenchmarkBorrowSlice is the cost of secret mode for a callback: a rent, an
// empty callback (inside secret.Do in secret mode) and a Return, next to
// the same rent and Return without a callback.
func BenchmarkBorrowSlice(b *testing.B) {
	s := newTest(b)
	h, _ := Alloc[byte](s, 32)
	b.Run("size=32/op=with", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			BorrowSlice(s, h, func([]byte) error { return nil })
		}
	})
	b.Run("size=32/op=rent-return", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			RentSlice[byte](s, h)
			s.Return(h)
		}
	})
}

// BenchmarkMAC compares MAC with a key in a Shuffler against crypto/hmac
// with the same key on the heap, each making a new HMAC per message as a
// server verifying a token does.
func BenchmarkMAC(b *testing.B) {
	s := newTest(b)
	key := make([]byte, 32)
	rand.Read(key)
	h, _ := CopyFrom(s, append([]byte(nil), key...))
	msg := make([]byte, 64)
	dst := make([]byte, 0, sha256.Size)
	b.Run("size=64/key=heap", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		for b.Loop() {
			m := hmac.New(sha256.New, key)
			m.Write(msg)
			dst = m.Sum(dst[:0])
		}
	})
	b.Run("size=64/key=shuffler", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		for b.Loop() {
			dst, _ = MAC(s, h, sha256.New, msg, dst[:0])
		}
	})
}

// BenchmarkSign compares a Signer whose key is in a Shuffler against the
// same key's own Sign on the heap.
func BenchmarkSign(b *testing.B) {
	s := newTest(b)
	digest := sha256.Sum256([]byte("message"))
	for _, k := range []testKey{testKeys()[0], testKeys()[1], testKeys()[4]} {
		in, opts := digest[:], crypto.SignerOpts(crypto.SHA256)
		if k.name == "Ed25519" {
			in, opts = []byte("a message of some 32 bytes......"), crypto.Hash(0)
		}
		sg := newTestSigner(b, s, k.priv)
		for _, c := range []struct {
			name string
			sg   crypto.Signer
		}{{"heap", k.priv}, {"shuffler", sg}} {
			b.Run("alg="+k.name+"/key="+c.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.sg.Sign(rand.Reader, in, opts); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkAdapterCost runs each adapter and the same operation with a
// plain heap key alternately, one of each per iteration, and reports the
// time of each and their ratio (x-heap). On a shared machine, whose load
// changes from one second to the next, alternating keeps the two under the
// same load, so the ratio holds up where two separate benchmarks' times do
// not.
func BenchmarkAdapterCost(b *testing.B) {
	s := newTest(b)
	key := make([]byte, 32)
	rand.Read(key)
	kh, _ := CopyFrom(s, append([]byte(nil), key...))
	msg := make([]byte, 64)
	dst := make([]byte, 0, sha256.Size)
	pair := func(b *testing.B, heap, shuffler func()) {
		var th, ts time.Duration
		timed := func(f func()) time.Duration {
			t0 := time.Now()
			f()
			return time.Since(t0)
		}
		// Which goes first alternates too, so that neither always pays
		// for what the other leaves behind (cache misses, GC assists).
		for i := 0; b.Loop(); i++ {
			if i%2 == 0 {
				th += timed(heap)
				ts += timed(shuffler)
			} else {
				ts += timed(shuffler)
				th += timed(heap)
			}
		}
		n := float64(b.N)
		b.ReportMetric(float64(th.Nanoseconds())/n, "heap-ns/op")
		b.ReportMetric(float64(ts.Nanoseconds())/n, "memshuffle-ns/op")
		b.ReportMetric(float64(ts)/float64(th), "x-heap")
	}
	b.Run("op=MAC/size=64", func(b *testing.B) {
		pair(b, func() {
			m := hmac.New(sha256.New, key)
			m.Write(msg)
			dst = m.Sum(dst[:0])
		}, func() {
			dst, _ = MAC(s, kh, sha256.New, msg, dst[:0])
		})
	})
	digest := sha256.Sum256([]byte("message"))
	for _, k := range []testKey{testKeys()[0], testKeys()[1], testKeys()[4]} {
		in, opts := digest[:], crypto.SignerOpts(crypto.SHA256)
		if k.name == "Ed25519" {
			in, opts = []byte("a message of some 32 bytes......"), crypto.Hash(0)
		}
		sg := newTestSigner(b, s, k.priv)
		b.Run("op=Sign/alg="+k.name, func(b *testing.B) {
			pair(b, func() {
				if _, err := k.priv.Sign(rand.Reader, in, opts); err != nil {
					b.Fatal(err)
				}
			}, func() {
				if _, err := sg.Sign(rand.Reader, in, opts); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
	b.Run("op=AEADSeal/size=64", func(b *testing.B) {
		// The heap key's AEAD is made once, as a program holding the key
		// would; NewAEAD builds the schedule on every call.
		block, _ := aes.NewCipher(key)
		gcm, _ := cipher.NewGCM(block)
		a, _ := NewAEAD(s, kh)
		nonce, out := make([]byte, 12), make([]byte, 0, len(msg)+16)
		pair(b, func() {
			out = gcm.Seal(out[:0], nonce, msg, nil)
		}, func() {
			out, _ = a.Seal(out[:0], nonce, msg, nil)
		})
	})
	h, _ := Alloc[byte](s, 32)
	b.Run("op=BorrowSlice/size=32", func(b *testing.B) {
		pair(b, func() {
			RentSlice[byte](s, h)
			s.Return(h)
		}, func() {
			BorrowSlice(s, h, func([]byte) error { return nil })
		})
	})
}
