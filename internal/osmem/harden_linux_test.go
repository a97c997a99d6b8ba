package osmem

import (
	"testing"
	"unsafe"
)

// TestHardenNeverDumpExcludedAlone: no reader of /proc/self/smaps ever sees
// a fresh region excluded from core dumps but not yet wiped on fork, the
// state that the forensic test takes for a dump-excluded mapping that is
// not the library's. harden used to set MADV_DONTDUMP first.
func TestHardenNeverDumpExcludedAlone(t *testing.T) {
	seen := 0
	betweenAdvice = func(b []byte) {
		seen++
		start := uint64(uintptr(unsafe.Pointer(&b[0])))
		if vmFlag(t, start, "dd") && !vmFlag(t, start, "wf") {
			t.Error("between harden's calls the region is excluded from dumps (dd) but not wiped on fork (wf)")
		}
	}
	t.Cleanup(func() { betweenAdvice = nil })
	r, err := Map(PageSize(), Flags{})
	if err != nil {
		t.Fatal(err)
	}
	defer Unmap(r)
	if seen != 1 {
		t.Fatalf("the hook ran %d times, want 1", seen)
	}
	start := uint64(uintptr(unsafe.Pointer(&r.Data[0])))
	if !vmFlag(t, start, "dd") || !vmFlag(t, start, "wf") {
		t.Fatal("the region lacks dd or wf once mapped")
	}
}
