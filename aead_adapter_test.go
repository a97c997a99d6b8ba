package memshuffle

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"slices"
	"testing"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/ctr"
)

// TestAEADMatchesGCM compares AEAD with crypto/cipher's AES-GCM for every
// key size and many message lengths, and opens what it sealed.
func TestAEADMatchesGCM(t *testing.T) {
	s := newTest(t)
	for _, ks := range []int{16, 24, 32} {
		key := make([]byte, ks)
		rand.Read(key)
		block, _ := aes.NewCipher(key)
		ref, _ := cipher.NewGCM(block)
		h, _ := CopyFrom(s, bytes.Clone(key))
		a, err := NewAEAD(s, h)
		if err != nil {
			t.Fatal(err)
		}
		nonce := make([]byte, a.NonceSize())
		for _, n := range []int{0, 1, 15, 16, 17, 63, 64, 65, 1000, 4097} {
			rand.Read(nonce)
			msg, ad := make([]byte, n), make([]byte, n%37)
			rand.Read(msg)
			rand.Read(ad)
			want := ref.Seal([]byte("prefix"), nonce, msg, ad)
			got, err := a.Seal([]byte("prefix"), nonce, msg, ad)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("AES-%d, %d bytes: Seal differs from crypto/cipher (%v)", ks*8, n, err)
			}
			pt, err := a.Open(nil, nonce, got[6:], ad)
			if err != nil || !bytes.Equal(pt, msg) {
				t.Fatalf("AES-%d, %d bytes: Open: %v", ks*8, n, err)
			}
			// In place, as crypto/cipher allows.
			buf := append(bytes.Clone(msg), make([]byte, a.Overhead())...)
			sealed, err := a.Seal(buf[:0], nonce, buf[:n], ad)
			if err != nil || !bytes.Equal(sealed, want[6:]) {
				t.Fatalf("in place: %v", err)
			}
			opened, err := a.Open(sealed[:0], nonce, sealed, ad)
			if err != nil || !bytes.Equal(opened, msg) {
				t.Fatalf("open in place: %v", err)
			}
		}
	}
}

func TestAEADErrors(t *testing.T) {
	s := newTest(t)
	h, _ := CopyFrom(s, bytes.Repeat([]byte{0x42}, 32)) // not zeros: refused as a key nobody filled
	a, _ := NewAEAD(s, h)
	nonce := make([]byte, 12)
	sealed, _ := a.Seal(nil, nonce, []byte("hello, world"), []byte("ad"))
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x80
		if _, err := a.Open(nil, nonce, bad, []byte("ad")); !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("byte %d flipped: %v, want ErrAuthFailed", i, err)
		}
	}
	if _, err := a.Open(nil, nonce, sealed, []byte("other")); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("other additional data: %v", err)
	}
	if _, err := a.Open(nil, nonce, sealed[:15], nil); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("short ciphertext: %v", err)
	}
	if _, err := a.Seal(nil, nonce[:8], nil, nil); !errors.Is(err, ErrInvalidSize) {
		t.Errorf("8-byte nonce: %v", err)
	}
	buf := make([]byte, 64)
	if got, err := a.Seal(buf[:1], nonce, buf[:32], nil); !errors.Is(err, ErrBufferOverlap) || len(got) != 1 {
		t.Errorf("inexact overlap: %v, %d bytes", err, len(got))
	}
	// Additional data in dst's capacity past the bytes appended is no
	// overlap: only those are written (badargs_test.go has the overlaps).
	ad := buf[40:48]
	copy(ad, "addition")
	sealed, err := a.Seal(buf[:0], nonce, []byte("m"), ad)
	if err != nil {
		t.Fatalf("Seal with additional data past the 17 bytes appended: %v", err)
	}
	sealed = slices.Clone(sealed)
	if opened, err := a.Open(buf[:0], nonce, sealed, ad); err != nil || string(opened) != "m" {
		t.Errorf("Open with additional data past the byte appended: %q, %v", opened, err)
	}
	for _, n := range []int{1, 15, 31, 33, 64} {
		k, _ := Alloc[byte](s, n)
		if _, err := NewAEAD(s, k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%d-byte key: %v, want ErrInvalidKey", n, err)
		}
	}
	if _, err := NewAEAD(s, Handle{}); !errors.Is(err, ErrInvalidHandle) {
		t.Errorf("zero handle: %v", err)
	}
	s.Free(h)
	if _, err := a.Seal(nil, nonce, nil, nil); !errors.Is(err, ErrInvalidHandle) {
		t.Errorf("freed key: %v", err)
	}
}

// TestWipePointee checks that the AES schedule and GCM state crypto/cipher
// makes get zeroed, in their objects and, where those refer to it (on
// s390x: the key behind a slice, the schedule behind a pointer, which the
// GCM shares with its Block), wherever ctr.Reach finds it. The GCM goes
// first, as in do. An object with pointers (the s390x shape, which a wipe
// of its bytes alone would have hidden from the garbage collector) is
// zeroed typed, with what it refers to that holds no pointers.
func TestWipePointee(t *testing.T) {
	key := bytes.Repeat([]byte{0xa5}, 32)
	block, _ := aes.NewCipher(key)
	g, _ := cipher.NewGCM(block)
	mems := make([][][]byte, 2)
	for i, v := range []any{g, block} {
		mems[i] = ctr.Reach(v)
		if !slices.ContainsFunc(mems[i], func(m []byte) bool { return bytes.Contains(m, key) }) {
			t.Fatalf("%T does not hold the key: not the object wipePointee should wipe", v)
		}
		// TestAdapterCopies looks for the last round key in this layout.
		var rks [aesctr.RoundKeysSize]byte
		if !pureGo && aesctr.Expand(&rks, (*[32]byte)(key)) == nil &&
			!slices.ContainsFunc(mems[i], func(m []byte) bool { return bytes.Contains(m, rks[len(rks)-16:]) }) {
			t.Fatalf("%T does not hold the last round key as internal/aesctr lays it out", v)
		}
	}
	for i, v := range []any{g, block} {
		wipePointee(v)
		for _, m := range mems[i] {
			if !bytes.Equal(m, make([]byte, len(m))) {
				t.Fatalf("%T not zeroed", v)
			}
		}
	}

	type schedule struct{ enc [60]uint32 }
	sched := &schedule{}
	for i := range sched.enc {
		sched.enc[i] = 0xa5a5a5a5
	}
	other := &struct{ p *int }{new(int)}
	p := &struct {
		key      []byte
		fallback *schedule
		other    *struct{ p *int }
	}{slices.Clone(key), sched, other}
	k := p.key
	wipePointee(p)
	if p.key != nil || p.fallback != nil || p.other != nil {
		t.Error("an object with pointers was not zeroed")
	}
	if !bytes.Equal(k, make([]byte, len(k))) || sched.enc != [60]uint32{} {
		t.Error("the key and the schedule the object refers to were left")
	}
	if other.p == nil {
		t.Error("memory with pointers of its own, not key material, was zeroed")
	}
}
