// Package pintest checks, in tests, whether the runtime can stop a
// goroutine where it stands (internal/nopreempt pins it so that it cannot),
// and runs a test again in fresh processes, for what only the first uses
// in a process do.
//
// The probe: a goroutine of its own, already running on another P, calls
// runtime.GC when the spin starts, and the spin reports whether the
// collection completed while it spun. runtime.GC stops the world, which
// waits for every running goroutine, and the spin's only calls are to the
// clock, so only a preemption stops it, asynchronous or at the clock's
// prologue. The spin neither parks nor panics, so it may run pinned.
package pintest

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Spins: where the collection must not complete the whole spin elapses;
// where it must, the spin is long enough for a collection of a large heap
// on a loaded machine under the race detector, and ends as soon as it
// completes.
const (
	pinnedSpin   = 100 * time.Millisecond
	unpinnedSpin = 10 * time.Second
)

// Require skips t where the probe cannot tell a pinned goroutine from
// another, or where pins, what the build pins, is false.
func Require(t testing.TB, pins bool) {
	t.Helper()
	switch {
	case !pins:
		t.Skip("this build pins nothing here (secret mode, or BoringCrypto's cgo calls)")
	case runtime.GOMAXPROCS(0) < 2:
		t.Skip("GOMAXPROCS < 2: the collecting goroutine cannot run beside the spinning one")
	case strings.Contains(os.Getenv("GODEBUG"), "asyncpreemptoff=1"):
		t.Skip("asynchronous preemption is off: nothing stops the spin, pinned or not")
	}
}

// Preemptible runs run, which calls spin exactly once, where the probe is
// to spin, and reports whether the runtime could stop the goroutine
// there. pinned is what the caller expects, and sets how long the spin
// lasts. t fails if run never calls spin, or if the collection does not
// complete within 10 s of the spin's end.
func Preemptible(t testing.TB, pinned bool, run func(spin func())) bool {
	t.Helper()
	var start, ready, done atomic.Bool
	go func() {
		ready.Store(true)
		for !start.Load() {
		}
		runtime.GC()
		done.Store(true)
	}()
	for !ready.Load() {
		runtime.Gosched()
	}
	d := unpinnedSpin
	if pinned {
		d = pinnedSpin
	}
	var during, spun bool
	run(func() {
		start.Store(true)
		for end := time.Now().Add(d); time.Now().Before(end) && !done.Load(); {
		}
		during, spun = done.Load(), true
	})
	start.Store(true) // where run did not spin, so that the goroutine ends
	for deadline := time.Now().Add(10 * time.Second); !done.Load(); {
		if time.Now().After(deadline) {
			t.Fatal("runtime.GC did not complete within 10 s of the spin's end")
		}
		runtime.Gosched()
	}
	if !spun {
		t.Fatal("the probe did not spin: nothing ran where it was to")
	}
	return during
}

// childEnv names the test a process started by InFreshProcesses runs.
const childEnv = "PINTEST_CHILD"

// InFreshProcesses runs t n times, each in a fresh process of the test
// binary, and fails it if any of them fails; in such a process it
// reports true, and the test does what the fresh process is for.
func InFreshProcesses(t *testing.T, n int) (child bool) {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		return true
	}
	for range n {
		cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("a fresh process failed: %v\n%s", err, out)
		}
	}
	return false
}
