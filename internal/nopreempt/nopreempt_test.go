package nopreempt

import (
	"runtime"
	"testing"

	"github.com/memshuffle/memshuffle/internal/pintest"
)

// TestPinHoldsOffTheCollector: runtime.GC completes while an unpinned
// goroutine spins (the control: the runtime preempts it), not while a
// pinned one spins, and again once it has unpinned.
func TestPinHoldsOffTheCollector(t *testing.T) {
	pintest.Require(t, true)
	for i, pin := range []bool{false, true, true, false} {
		got := pintest.Preemptible(t, pin, func(spin func()) {
			if pin {
				Pin()
				defer Unpin()
			}
			spin()
		})
		if got == pin {
			t.Errorf("spin %d, pinned %v: the collection completed during the spin: %v", i, pin, got)
		}
	}
}

// TestPinAllows: what the package doc allows inside a pin (allocation,
// locking the thread) runs without the runtime throwing.
func TestPinAllows(t *testing.T) {
	Pin()
	defer Unpin()
	runtime.LockOSThread()
	var keep [][]byte
	for i := range 1000 {
		keep = append(keep, make([]byte, 1<<(i%16)))
	}
	runtime.UnlockOSThread()
	if len(keep) != 1000 {
		t.Fatal("lost allocations")
	}
}
