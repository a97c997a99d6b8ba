package memshuffle

import (
	"errors"
	"fmt"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestAEADTooLarge: a message longer than GCM allows under one nonce makes
// Seal fail with ErrInvalidSize and Open with ErrAuthFailed, where
// crypto/cipher's Seal panics, and before either allocates an output buffer
// of that size. The message is address space reserved without memory
// behind it: nothing may read it.
func TestAEADTooLarge(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) < 8 {
		t.Skip("needs a 64-bit address space")
	}
	limit := aeadMaxPlaintext // a variable: as a constant it overflows int on 32-bit systems
	n := int(limit) + 1
	region, err := unix.Mmap(-1, 0, n+aeadTagSize+1, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANON|unix.MAP_NORESERVE)
	if err != nil {
		t.Skipf("cannot reserve %d bytes of address space: %v", n, err)
	}
	t.Cleanup(func() { unix.Munmap(region) })

	s := newTest(t)
	kh, err := CopyFrom(s, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAEAD(s, kh)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, aeadNonceSize)
	try := func(name string, f func() ([]byte, error)) error {
		t.Helper()
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panicked: %v", p)
				}
			}()
			_, err = f()
		}()
		return err
	}
	// Seal in place, so that no output buffer need be made.
	if err := try("Seal", func() ([]byte, error) { return a.Seal(region[:0], nonce, region[:n], nil) }); !errors.Is(err, ErrInvalidSize) {
		t.Errorf("Seal of %d bytes: %v, want ErrInvalidSize", n, err)
	}
	if err := try("Open", func() ([]byte, error) { return a.Open(region[:0], nonce, region[:n+aeadTagSize], nil) }); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("Open of %d bytes: %v, want ErrAuthFailed", n+aeadTagSize, err)
	}
	// With no room in dst, the output buffer would be made first: 64 GiB,
	// which the runtime fails to map by aborting the process.
	if err := try("Seal", func() ([]byte, error) { return a.Seal(nil, nonce, region[:n], nil) }); !errors.Is(err, ErrInvalidSize) {
		t.Errorf("Seal of %d bytes to nil: %v, want ErrInvalidSize", n, err)
	}
	if err := try("Open", func() ([]byte, error) { return a.Open(nil, nonce, region[:n+aeadTagSize], nil) }); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("Open of %d bytes to nil: %v, want ErrAuthFailed", n+aeadTagSize, err)
	}
}
