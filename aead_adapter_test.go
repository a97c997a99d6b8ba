package memshuffle

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"reflect"
	"slices"
	"testing"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/aesctr"
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
// makes are plain data and get zeroed, and that an object with pointers
// is left alone.
func TestWipePointee(t *testing.T) {
	key := bytes.Repeat([]byte{0xa5}, 32)
	block, _ := aes.NewCipher(key)
	g, _ := cipher.NewGCM(block)
	for _, v := range []any{block, g} {
		rv := reflect.ValueOf(v)
		mem := unsafe.Slice((*byte)(rv.UnsafePointer()), rv.Type().Elem().Size())
		if !bytes.Contains(mem, key) {
			t.Fatalf("%T does not hold the key: not the object wipePointee should wipe", v)
		}
		// TestAdapterCopies looks for the last round key in this layout.
		var rks [aesctr.RoundKeysSize]byte
		if !pureGo && aesctr.Expand(&rks, (*[32]byte)(key)) == nil && !bytes.Contains(mem, rks[len(rks)-16:]) {
			t.Fatalf("%T does not hold the last round key as internal/aesctr lays it out", v)
		}
		wipePointee(v)
		if !bytes.Equal(mem, make([]byte, len(mem))) {
			t.Fatalf("%T not zeroed: its layout has pointers now", v)
		}
	}
	p := &struct{ b []byte }{b: key}
	wipePointee(p)
	if p.b == nil {
		t.Fatal("an object with pointers was zeroed")
	}
}
