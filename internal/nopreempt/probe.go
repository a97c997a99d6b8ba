package nopreempt

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
)

// ProbeForTest tells whether the runtime can stop a goroutine where it
// stands: a goroutine of its own, already running on another P, calls
// runtime.GC when Spin starts, and Spin reports whether the collection
// completed while it spun. runtime.GC stops the world, which waits for
// every running goroutine, and Spin's only calls are to the clock, so only
// a preemption stops it, asynchronous or at the clock's prologue. Spin
// neither parks nor panics, so it may run pinned; the calls around it may
// not. Only tests use it, where [ProbeUsableForTest] reports nil.
type ProbeForTest struct{ start, ready, done atomic.Bool }

// Spins a probe's users choose: PinnedSpinForTest where the collection
// must not complete (the whole spin elapses), UnpinnedSpinForTest where it
// must, long enough for a collection of a large heap on a loaded machine
// under the race detector (Spin returns as soon as it completes).
const (
	PinnedSpinForTest   = 100 * time.Millisecond
	UnpinnedSpinForTest = 10 * time.Second
)

// StartProbeForTest starts the probe's collecting goroutine and waits
// until it runs.
func StartProbeForTest() *ProbeForTest {
	p := new(ProbeForTest)
	go func() {
		p.ready.Store(true)
		for !p.start.Load() {
		}
		runtime.GC()
		p.done.Store(true)
	}()
	for !p.ready.Load() {
		runtime.Gosched()
	}
	return p
}

// Spin starts the collection and spins for up to d, or until it completes:
// it reports whether it did. Call it once.
func (p *ProbeForTest) Spin(d time.Duration) bool {
	p.start.Store(true)
	for end := time.Now().Add(d); time.Now().Before(end) && !p.done.Load(); {
	}
	return p.done.Load()
}

// Finish waits for the collection to complete, and fails if that takes
// more than 10 s.
func (p *ProbeForTest) Finish() error {
	for deadline := time.Now().Add(10 * time.Second); !p.done.Load(); {
		if time.Now().After(deadline) {
			return errors.New("nopreempt: runtime.GC did not complete within 10 s of the spin's end")
		}
		runtime.Gosched()
	}
	return nil
}

// ProbeUsableForTest reports why a [ProbeForTest] cannot tell a pinned
// goroutine from another here, or nil when it can.
func ProbeUsableForTest() error {
	if runtime.GOMAXPROCS(0) < 2 {
		return errors.New("GOMAXPROCS < 2: the collecting goroutine cannot run beside the spinning one")
	}
	if strings.Contains(os.Getenv("GODEBUG"), "asyncpreemptoff=1") {
		return errors.New("asynchronous preemption is off: nothing stops the spin, pinned or not")
	}
	return nil
}
