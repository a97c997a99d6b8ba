package seal

import (
	"bytes"
	"reflect"
	"slices"
	"testing"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/ctr"
)

// objectBytes is the memory of the object the pointer in v refers to.
func objectBytes(v any) []byte {
	p := reflect.ValueOf(v)
	return unsafe.Slice((*byte)(p.UnsafePointer()), p.Type().Elem().Size())
}

// TestWipeClearsAEADKey: crypto/aes's GCM keeps the key schedule in its
// own object (whose first round keys are the key), x/crypto's
// ChaCha20-Poly1305 the key itself; Wipe must leave neither. The control:
// the key is in the object until Wipe.
func TestWipeClearsAEADKey(t *testing.T) {
	for _, m := range []Mode{AES256GCM, ChaCha20Poly1305} {
		t.Run(m.String(), func(t *testing.T) {
			key := [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}
			salt := [8]byte{9}
			var state [ctr.StateSize]byte
			c, err := New(m, &key, &salt, &state)
			if err != nil {
				t.Fatal(err)
			}
			a := c.(aeadCipher).a
			obj := objectBytes(a)
			// crypto/aes's generic code (no AES-NI, 386) keeps the round
			// keys as big-endian words in native order: on a little-endian
			// machine each 4 bytes of the key stand reversed.
			swapped := key
			for i := 0; i < len(swapped); i += 4 {
				slices.Reverse(swapped[i : i+4])
			}
			holds := func(k *[32]byte) bool { return bytes.Contains(obj, k[:16]) && bytes.Contains(obj, k[16:]) }
			if !holds(&key) && !holds(&swapped) {
				t.Fatal("the key is not in the AEAD's object: the check looks in the wrong place")
			}
			c.Wipe()
			if !bytes.Equal(obj, make([]byte, len(obj))) {
				t.Fatal("Wipe left the AEAD's object as it was")
			}
		})
	}
}
