//go:build linux || windows

package memscan

import "testing"

// TestScanProcessSelf is the scanner's reason to exist: a secret planted in
// memory is found exactly once (not in the Pattern, not in the read
// buffer), and after a wipe not at all.
func TestScanProcessSelf(t *testing.T) {
	region := mapRegion(t, 3*4096)
	off := 4096 - 5 // across a page boundary inside one mapping
	secret := region[off : off+32]
	p := plantSecret(t, secret)

	h := wantOneHit(t, scanSelf(t, p), addrOf(secret))
	if h.Mapping.Perms != "rw-p" || h.Mapping.Name() != "anon" {
		t.Errorf("mapping %+v, want an anonymous rw-p one", h.Mapping)
	}

	clear(region)
	if hits := scanSelf(t, p); len(hits) != 0 {
		t.Fatalf("after wiping: %d hits %+v, want 0", len(hits), hits)
	}
}

// TestScanProcessSelfLarge plants secrets in a region larger than the read
// buffer, so some reads start and end inside it.
func TestScanProcessSelfLarge(t *testing.T) {
	const size = 3 * readBufSize
	region := mapRegion(t, size)
	for i := 0; i < size; i += 4096 {
		region[i] = 1 // populate every page
	}
	secret := region[size/2 : size/2+40]
	p := plantSecret(t, secret)
	wantOneHit(t, scanSelf(t, p), addrOf(secret))
}
