package memshuffle

import (
	"fmt"
	"testing"
)

// TestStoreFaultOpsLeavesNothingLocked: faultOps has the system
// refuse munmap calls, and a region whose unmap was refused stays mapped,
// and locked, after the Shuffler has let go of it. faultOps must give those
// back: each run of TestStoreFaultOps kept about 1.3 MiB locked, so
// that with -count, as an ordinary user under the default 8 MiB limit,
// every test that locks memory failed after a few runs.
func TestStoreFaultOpsLeavesNothingLocked(t *testing.T) {
	if raceBuild {
		t.Skip("one goroutine: nothing for the race detector to find, and its invariant checks several times as slow")
	}
	base := vmLck(t)
	for seed := range uint64(3) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			faultOps(t, seed, faultOpsOptions(seed)...)
		})
	}
	if grew := vmLck(t) - base; grew > 0 {
		t.Fatalf("locked memory (VmLck) grew by %d bytes across the runs", grew)
	}
}
