package nopreempt

import (
	"runtime"
	"testing"
	"time"
)

// preemptible is a probe's spin of d, pinned or not.
func preemptible(pin bool, d time.Duration) (bool, error) {
	p := StartProbeForTest()
	if pin {
		Pin()
	}
	got := p.Spin(d)
	if pin {
		Unpin()
	}
	return got, p.Finish()
}

// TestPinHoldsOffTheCollector: runtime.GC completes while an unpinned
// goroutine spins (the control: the runtime preempts it), not while a
// pinned one spins, and again once it has unpinned.
func TestPinHoldsOffTheCollector(t *testing.T) {
	if err := ProbeUsableForTest(); err != nil {
		t.Skip(err)
	}
	for i, c := range []struct {
		pin  bool
		spin time.Duration
	}{{false, UnpinnedSpinForTest}, {true, PinnedSpinForTest}, {true, PinnedSpinForTest}, {false, UnpinnedSpinForTest}} {
		got, err := preemptible(c.pin, c.spin)
		if err != nil {
			t.Fatal(err)
		}
		if got == c.pin {
			t.Errorf("spin %d, pinned %v: the collection completed during the spin: %v", i, c.pin, got)
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
