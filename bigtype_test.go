//go:build amd64 || arm64

package memshuffle

import (
	"errors"
	"testing"
)

// TestLargeTypes: a type far larger than any entry, or than memory, is an
// error before anything is allocated for it, and a borrow as a large type
// allocates nothing on the Go heap: the library sizes and checks T without
// ever making one (a T boxed in an interface is a copy, on the heap for a
// large one, and one of 1 TiB ended the process out of memory).
func TestLargeTypes(t *testing.T) {
	s := newTest(t)
	if _, err := Create[[1 << 40]byte](s); !errors.Is(err, ErrInvalidSize) {
		t.Errorf("Create of a 1 TiB type: %v, want ErrInvalidSize", err)
	}
	if _, err := Create[[1 << 31]byte](s); !errors.Is(err, ErrInvalidSize) {
		t.Errorf("Create of a 2 GiB type: %v, want ErrInvalidSize", err)
	}
	small, err := Alloc[byte](s, 64)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Rent[[1 << 40]byte](s, small); !errors.Is(err, ErrTypeMismatch) {
		t.Errorf("Rent of a 64-byte entry as a 1 TiB type: %v, want ErrTypeMismatch", err)
	}
	if err := BorrowView(s, small, func(*[1 << 40]byte) error { return nil }); !errors.Is(err, ErrTypeMismatch) {
		t.Errorf("BorrowView of a 64-byte entry as a 1 TiB type: %v, want ErrTypeMismatch", err)
	}
	big, err := Create[[1 << 20]byte](s)
	if err != nil {
		t.Fatal(err)
	}
	if raceBuild {
		return // the race detector allocates on its own
	}
	if !s.Stats().KeyOffHeap {
		// crypto/cipher's CTR stream, which the crypto/aes fallback
		// takes past 128 bytes, is allocated on every call (SECURITY.md).
		t.Log("crypto/aes fallback: allocations not checked")
		return
	}
	allocs := testing.AllocsPerRun(10, func() {
		if err := Borrow(s, big, func(p *[1 << 20]byte) error { p[0]++; return nil }); err != nil {
			t.Fatal(err)
		}
		if _, err := Rent[[1 << 20]byte](s, big); err != nil {
			t.Fatal(err)
		}
		if err := s.Return(big); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a Borrow and a Rent of a 1 MiB type: %v allocations, want 0", allocs)
	}
}
