package seal

import (
	"bytes"
	"crypto/aes"
	"encoding/binary"
	"reflect"
	"runtime"
	"slices"
	"testing"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/ctr"
)

// TestWipeClearsAEADKey: crypto/aes's GCM keeps the key schedule in its
// own object (whose first round keys are the key), or on s390x in memory
// the object refers to (ctr.Reach: the key itself with CPACF, the schedule
// without), x/crypto's ChaCha20-Poly1305 the key itself; Wipe must leave
// none of it. The control: the key is there until Wipe.
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
			mem := ctr.Reach(c.(aeadCipher).a)
			if !slices.ContainsFunc(mem, func(m []byte) bool { return holdsKey(m, &key) }) {
				t.Fatal("the key is not in the AEAD's object or what it refers to: the check looks in the wrong place")
			}
			c.Wipe()
			for _, m := range mem {
				if !bytes.Equal(m, make([]byte, len(m))) {
					t.Fatal("Wipe left the AEAD's key material")
				}
			}
		})
	}
}

// holdsKey reports whether mem holds the key: byte for byte, or as
// crypto/aes's generic code keeps its first round keys, big-endian words
// in native order (on a little-endian machine each 4 bytes of the key
// stand reversed).
func holdsKey(mem []byte, key *[32]byte) bool {
	swapped := *key
	for i := 0; i < len(swapped); i += 4 {
		binary.BigEndian.PutUint32(swapped[i:], binary.NativeEndian.Uint32(key[i:]))
	}
	for _, k := range [][32]byte{*key, swapped} {
		if bytes.Contains(mem, k[:16]) && bytes.Contains(mem, k[16:]) {
			return true
		}
	}
	return false
}

// TestGCMKeepsBlockKey: on s390x with CPACF crypto/aes's GCM refers to the
// key in the Block it was made from, rather than holding a copy: New must
// not wipe that key with the rest of the Block (it did, and the GCM then
// sealed under a key of zeros), and the AEAD's Wipe must. Under an emulator
// without CPACF the test gives the Block the shape crypto/aes gives it
// with CPACF. Elsewhere the Block has no such shape and the test skips.
func TestGCMKeepsBlockKey(t *testing.T) {
	key := [32]byte{31: 1}
	for i := range 31 {
		key[i] = byte(0x40 + i)
	}
	blk, err := aes.NewCipher(key[:])
	if err != nil {
		t.Fatal(err)
	}
	v := reflect.ValueOf(blk).Elem()
	if v.Type().PkgPath() != "crypto/internal/fips140/aes" {
		t.Skipf("the Block is a %T, not crypto/aes's", blk)
	}
	v = v.Field(0) // the embedded block
	keyF, storage, fallback := v.FieldByName("key"), v.FieldByName("storage"), v.FieldByName("fallback")
	if !keyF.IsValid() || !storage.IsValid() || !fallback.IsValid() {
		t.Skip("crypto/aes's Block holds its schedule itself on " + runtime.GOARCH)
	}
	if !fallback.IsNil() {
		// The shape newBlock gives a Block with CPACF: the key in
		// storage, the slice over it, function code 20 (AES-256).
		set := func(f reflect.Value, x any) {
			reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Set(reflect.ValueOf(x).Convert(f.Type()))
		}
		st := (*[32]byte)(unsafe.Pointer(storage.UnsafeAddr()))
		*st = key
		set(v.FieldByName("function"), 20)
		set(keyF, st[:])
		reflect.NewAt(fallback.Type(), unsafe.Pointer(fallback.UnsafeAddr())).Elem().SetZero()
	}
	c, err := newGCM(blk, &[8]byte{})
	if err != nil {
		t.Fatal(err)
	}
	// The key KMA and KM take: what the slice in the GCM's copy of the
	// Block refers to (its copy of the array is not used).
	a := c.(aeadCipher).a
	used := reflect.ValueOf(a).Elem().FieldByName("cipher").Field(0).FieldByName("key")
	if got := unsafe.Slice((*byte)(used.UnsafePointer()), used.Len()); !bytes.Equal(got, key[:]) {
		t.Fatalf("the GCM would seal under %x, not its key: New wiped the Block the GCM refers to", got)
	}
	mem := ctr.Reach(a)
	c.Wipe()
	for _, m := range mem {
		if !bytes.Equal(m, make([]byte, len(m))) {
			t.Fatal("Wipe left the GCM's key")
		}
	}
}
