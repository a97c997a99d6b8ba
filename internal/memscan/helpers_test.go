//go:build linux || windows

package memscan

import (
	"crypto/rand"
	"os"
	"testing"
	"unsafe"
)

// plantSecret writes a fresh random n-byte secret into dst byte by byte,
// each byte the XOR of two random shares, so the plaintext never exists
// anywhere but dst. It returns the Pattern for it.
func plantSecret(t testing.TB, dst []byte) *Pattern {
	t.Helper()
	a, b := make([]byte, len(dst)), make([]byte, len(dst))
	rand.Read(a)
	rand.Read(b)
	for i := range dst {
		dst[i] = a[i] ^ b[i]
	}
	return mustPattern(t, dst)
}

func addrOf(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }

// scanSelf scans the test process and returns the hits.
func scanSelf(t testing.TB, p *Pattern) []Hit {
	t.Helper()
	hits, err := ScanProcess(os.Getpid(), p)
	if err != nil {
		t.Fatalf("ScanProcess(self): %v", err)
	}
	return hits
}

// wantOneHit fails unless hits is exactly one hit at addr, in a mapping
// that contains it.
func wantOneHit(t testing.TB, hits []Hit, addr uint64) Hit {
	t.Helper()
	if len(hits) != 1 {
		t.Fatalf("%d hits %+v, want exactly one at %#x", len(hits), hits, addr)
	}
	h := hits[0]
	if h.Addr != addr {
		t.Fatalf("hit at %#x, want %#x", h.Addr, addr)
	}
	if !h.Mapping.contains(addr) {
		t.Fatalf("hit at %#x reported in mapping %#x-%#x", addr, h.Mapping.Start, h.Mapping.End)
	}
	return h
}
