package aesctr

import (
	"crypto/rand"
	"testing"

	"golang.org/x/sys/unix"
)

// TestEqualBounds checks, with a page that faults on any access, that
// Equal reads no byte past the end of its inputs, and none at all when
// their lengths differ, as crypto/subtle.ConstantTimeCompare does.
func TestEqualBounds(t *testing.T) {
	requireSupported(t)
	page := unix.Getpagesize()
	mem, err := unix.Mmap(-1, 0, 3*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	// [0, page) and [2*page, 3*page) are readable, [page, 2*page) is not.
	if err := unix.Mprotect(mem[page:2*page], unix.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	rand.Read(mem[:page])
	copy(mem[2*page:], mem[:page])
	for name, g := range guardModes(t) {
		withGuard(g, func() {
			for n := 0; n <= 300; n++ {
				a := mem[page-n : page]     // ends where the fault begins
				b := mem[3*page-n : 3*page] // the same bytes
				if !Equal(a, b) {
					t.Fatalf("guard %s: n=%d: Equal of equal inputs = false", name, n)
				}
				// Lengths that differ: the slice over the faulting page
				// must not be read.
				if Equal(a, mem[page:page+n+1]) || Equal(mem[page:page+n+1], a) {
					t.Fatalf("guard %s: n=%d: Equal of different lengths = true", name, n)
				}
			}
		})
	}
}
