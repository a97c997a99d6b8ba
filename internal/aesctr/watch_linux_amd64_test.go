package aesctr

import (
	"bytes"
	"crypto/rand"
	"runtime"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestSignalWatch stands a probe with no guard of its own in for foreign
// assembly: it loads a marker into 14 XMM registers and sends a signal to
// its own thread, which saves them in a frame on the signal stack. Bare,
// the marker must be found there (the control); inside WatchSignals and
// End it must be gone, and each signal counted as a detection. On an M
// that has run C code the watch must write no canary and lock nothing.
func TestSignalWatch(t *testing.T) {
	requireCanary(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	stack, ok := threadSignalStack()
	if !ok {
		t.Fatal("the thread's signal stack does not match the kernel's")
	}
	bare := func() bool { return probe(t, stack, guardChoice{guard: guardOff}) }
	watched := func() bool {
		w := WatchSignals()
		if w.top == 0 {
			t.Fatal("WatchSignals watches nothing on a Go thread that passed the start-up check")
		}
		var pattern [16]byte
		rand.Read(pattern[:])
		probeSignalAsm(&pattern, int(unix.SIGURG), guardOff, 0)
		w.End()
		return bytes.Contains(stack, pattern[:])
	}
	const rounds = 20
	found := 0
	for range rounds {
		if bare() {
			found++
		}
	}
	if found < rounds/2 {
		t.Fatalf("with no watch the marker was found after %d of %d signals: the control does not work", found, rounds)
	}
	hits := atomic.LoadUint64(&canaryHits)
	for i := range rounds {
		if watched() {
			t.Errorf("marker found on the signal stack after watched signal %d", i)
		}
	}
	if caught := atomic.LoadUint64(&canaryHits) - hits; caught < rounds {
		t.Errorf("%d detections for %d signals", caught, rounds)
	}

	undo := func() func() {
		n := (*uint64)(unsafe.Add(threadM(), offMNcgocall))
		*n += 2
		return func() { *n -= 2 }
	}()
	defer undo()
	if w := WatchSignals(); w.top != 0 {
		w.End()
		t.Error("WatchSignals trusts the recorded signal stack of an M that has run C code")
	}
}
