package memshuffle

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"hash"
	"reflect"
	"testing"

	"github.com/memshuffle/memshuffle/internal/seal"
)

// TestMACScratch: the standard library's SHA-256 and SHA-512 hashes move
// into MAC's memory (a Go release that gave their digests a pointer would
// keep them on the heap, and this test says so), every MAC gives its slot
// back wiped, and MACs made while every slot is taken, or with a hash that
// does not move, still equal crypto/hmac's.
func TestMACScratch(t *testing.T) {
	for _, h := range []func() hash.Hash{sha256.New, sha256.New224, sha512.New, sha512.New384, sha512.New512_256} {
		// Under boringcrypto the hashes are BoringSSL's, of other types
		// and sizes; MAC's doc promises nothing there.
		if typ := reflect.TypeOf(h()); !movableHashes[typ] && seal.CryptoInGo {
			t.Errorf("%v does not move into MAC's memory", typ)
		}
	}
	s := newTest(t)
	key := bytes.Repeat([]byte{0x5a}, 40)
	kh, err := CopyFrom(s, bytes.Clone(key)) // CopyFrom wipes its source
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("message")
	mac := func(h func() hash.Hash) {
		t.Helper()
		got, err := MAC(s, kh, h, msg, nil)
		if err != nil {
			t.Fatal(err)
		}
		m := hmac.New(h, key)
		m.Write(msg)
		if !hmac.Equal(got, m.Sum(nil)) {
			t.Errorf("MAC with %T differs from crypto/hmac's", h())
		}
	}
	idle := func() {
		t.Helper()
		m := macMem.Load()
		if m == nil {
			t.Skip("MAC's memory could not be mapped here")
		}
		for i := range m.busy {
			if m.busy[i].Load() != 0 {
				t.Fatalf("slot %d still taken", i)
			}
		}
		if !allZero(m.data) {
			t.Fatal("MAC's memory not wiped")
		}
	}
	for _, h := range []func() hash.Hash{sha256.New, sha512.New384, func() hash.Hash { return sha3.New256() }} {
		mac(h)
		idle()
	}
	m := macMem.Load()
	// Where the search for a slot starts passes 2^31, where an int of 32
	// bits turns negative, and wraps at 2^32.
	for _, next := range []uint32{1<<31 - 2, 1<<32 - 2} {
		m.next.Store(next)
		for range 4 {
			mac(sha256.New)
		}
	}
	idle()
	for i := range m.busy {
		m.busy[i].Store(1)
	}
	mac(sha512.New) // on the heap
	for i := range m.busy {
		m.busy[i].Store(0)
	}
	idle()
}
