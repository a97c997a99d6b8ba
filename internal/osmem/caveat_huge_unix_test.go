//go:build unix

package osmem

import (
	"os"
	"runtime"
	"testing"
	"unsafe"
)

// TestLargeRegionNotRounded: a region of a huge page or more starts on a
// huge-page boundary, asks for huge pages and keeps its guard pages, but
// its length is the request in whole pages. It used to be rounded up to a multiple of 2 MiB:
// 4 MiB and a byte took 6 MiB, all of it locked.
func TestLargeRegionNotRounded(t *testing.T) {
	for _, n := range []int{2 << 20, 2<<20 + 12345, 4<<20 + 1, 5<<20 + 12345, 16<<20 + 15} {
		r, err := Map(n, Flags{Lock: true})
		if err != nil {
			t.Fatal(err)
		}
		want := (n + PageSize() - 1) &^ (PageSize() - 1)
		if len(r.Data) != want {
			t.Errorf("Map(%d): %d bytes, want %d", n, len(r.Data), want)
		}
		if r.Locked && r.LockedLen != want {
			t.Errorf("Map(%d): %d bytes locked, want %d", n, r.LockedLen, want)
		}
		if huge := uintptr(HugePageSize); huge > 0 {
			start := uintptr(unsafe.Pointer(&r.Data[0]))
			if start%huge != 0 {
				t.Errorf("Map(%d) at %#x: not on a huge-page boundary", n, start)
			}
			// A kernel built without transparent huge pages refuses the
			// advice, and Map goes on without it.
			_, thpErr := os.Stat("/sys/kernel/mm/transparent_hugepage")
			if thpErr == nil && !vmFlag(t, uint64(start), "hg") {
				t.Errorf("Map(%d): no huge-page advice", n)
			}
		}
		if runtime.GOOS == "linux" {
			checkMaps(t, r)
		}
		if err := Unmap(r); err != nil {
			t.Fatal(err)
		}
	}
}
