package aesctr

import (
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
// End it must be gone, and each signal counted as a detection, also on an
// M that has run C code, whose signal stack the watch checks with the
// kernel.
func TestSignalWatch(t *testing.T) {
	requireCanary(t)
	const rounds = 20
	// check runs on its own goroutine (t.Run's), locked to its thread
	// (lockedSignalStack), with that thread's signal stack.
	check := func(t *testing.T, cgoCalls uint64) {
		stack := lockedSignalStack(t)
		requireControl(t, stack, rounds)
		defer fakeCgo(cgoCalls, 0)()
		var st threadState
		threadStateAsm(&st)
		if ranC(&st) != (cgoCalls > 1) {
			t.Fatalf("the M reads as having run C code: %v, after %d cgo calls", ranC(&st), cgoCalls)
		}
		hits := atomic.LoadUint64(&canaryHits)
		for i := range rounds {
			w := WatchSignals()
			if w.top == 0 {
				t.Fatal("WatchSignals watches nothing on a thread whose signal stack the kernel confirms")
			}
			var pattern [16]byte
			rand.Read(pattern[:])
			signalProbe(&pattern)
			w.End()
			if onStack(stack, pattern[:]) {
				t.Errorf("marker found on the signal stack after watched signal %d", i)
			}
		}
		if caught := atomic.LoadUint64(&canaryHits) - hits; caught < rounds {
			t.Errorf("%d detections for %d signals", caught, rounds)
		}
	}
	t.Run("go", func(t *testing.T) { check(t, 0) })
	// Two cgo calls on the M, as a DNS lookup or os/user makes.
	t.Run("ran C", func(t *testing.T) { check(t, 2) })
}

// TestSameStack: the watch trusts a signal stack on an M that has run C
// code only when the kernel reports exactly the runtime's, enabled and not
// in use.
func TestSameStack(t *testing.T) {
	st := threadState{lo: 0x10000, hi: 0x18000}
	for _, c := range []struct {
		name string
		ss   sigaltstackT
		want bool
	}{
		{"the runtime's", sigaltstackT{sp: 0x10000, size: 0x8000}, true},
		{"moved", sigaltstackT{sp: 0x20000, size: 0x8000}, false},
		{"same start, smaller", sigaltstackT{sp: 0x10000, size: 0x4000}, false},
		{"same top, larger", sigaltstackT{sp: 0x8000, size: 0x10000}, false},
		{"in use", sigaltstackT{sp: 0x10000, size: 0x8000, flags: ssOnStack}, false},
		{"disabled", sigaltstackT{sp: 0x10000, size: 0x8000, flags: ssDisable}, false},
	} {
		if got := sameStack(&st, &c.ss); got != c.want {
			t.Errorf("%s: sameStack = %v, want %v", c.name, got, c.want)
		}
	}
}

// BenchmarkWatch is a WatchSignals and End around nothing: on a Go thread,
// and on one that has run C code, where the watch also asks the kernel for
// the thread's signal stack.
func BenchmarkWatch(b *testing.B) {
	requireCanary(b)
	// run runs on b.Run's goroutine, which it locks to its thread.
	run := func(b *testing.B) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		b.ReportAllocs()
		for b.Loop() {
			w := WatchSignals()
			w.End()
		}
	}
	b.Run("thread=go", run)
	b.Run("thread=ranC", func(b *testing.B) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer fakeCgo(2, 0)()
		run(b)
	})
}

// fakeCgo makes the calling thread's M read as having made calls more cgo
// calls, with under of them under way (C having called back into Go), and
// returns the function that undoes it. Both forget what was remembered of
// the M's signal stack (checkedStacks). The caller has locked its
// goroutine to the thread.
func fakeCgo(calls uint64, under int32) (undo func()) {
	m := threadM()
	n := (*uint64)(unsafe.Add(m, offMNcgocall))
	u := (*int32)(unsafe.Add(m, offMNcgo))
	forget := func() {
		var st threadState
		threadStateAsm(&st)
		checkedStacks[st.id%uint64(len(checkedStacks))].Store(nil)
	}
	forget()
	*n += calls
	*u += under
	return func() {
		*n -= calls
		*u -= under
		forget()
	}
}

// TestWatchAsksAfterCgoCall: on an M that has run C code, a signal stack
// the kernel confirmed is trusted until the M makes another cgo call; one
// that moved the stack meanwhile must leave the thread unwatched. An answer
// given while C has called back into Go is not remembered.
func TestWatchAsksAfterCgoCall(t *testing.T) {
	requireCanary(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	remembered := func() bool {
		var st threadState
		threadStateAsm(&st)
		c := checkedStacks[st.id%uint64(len(checkedStacks))].Load()
		return c != nil && *c == checkedStack{id: st.id, ncgocall: st.ncgocall, lo: st.lo, hi: st.hi}
	}
	watch := func(what string) {
		t.Helper()
		w := WatchSignals()
		if w.top == 0 {
			t.Fatalf("%s: the runtime's signal stack, confirmed by the kernel, is not watched", what)
		}
		w.End()
	}
	func() {
		defer fakeCgo(2, 1)()
		watch("in a callback from C")
		if remembered() {
			t.Error("an answer given while C has called back into Go is remembered")
		}
	}()
	defer fakeCgo(2, 0)()
	watch("after two cgo calls")
	if !remembered() {
		t.Error("the kernel's answer is not remembered")
	}

	// What C code may do in a cgo call: give the thread a signal stack of
	// its own. A signal taken meanwhile runs on it, which the runtime
	// allows (adjustSignalStack).
	other, err := unix.Mmap(-1, 0, 64<<10, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(other)
	var old sigaltstackT
	moved := sigaltstackT{sp: uintptr(unsafe.Pointer(&other[0])), size: uintptr(len(other))}
	if _, _, errno := unix.RawSyscall(unix.SYS_SIGALTSTACK, uintptr(unsafe.Pointer(&moved)), uintptr(unsafe.Pointer(&old)), 0); errno != 0 {
		t.Fatal(errno)
	}
	defer unix.RawSyscall(unix.SYS_SIGALTSTACK, uintptr(unsafe.Pointer(&old)), 0, 0)
	defer fakeCgo(1, 0)()
	for i := range 2 {
		if w := WatchSignals(); w.top != 0 {
			w.End()
			t.Errorf("watch %d: after another cgo call moved the signal stack, the watch still trusts the runtime's", i)
		}
		var st threadState
		threadStateAsm(&st)
		c := checkedStacks[st.id%uint64(len(checkedStacks))].Load()
		if c == nil || *c != (checkedStack{id: st.id, ncgocall: st.ncgocall}) {
			t.Errorf("watch %d: the kernel's no is not remembered: %+v", i, c)
		}
	}
}

// TestSignalWatchNested: the watched code may be a caller's that calls
// back into the library, whose guarded routines and watches plant the
// canaries again. A frame that landed in the watch before them must still
// be wiped by its End.
func TestSignalWatchNested(t *testing.T) {
	requireCanary(t)
	const rounds = 10
	stack := lockedSignalStack(t)
	requireControl(t, stack, rounds)
	for _, inner := range []struct {
		name string
		run  func()
	}{
		{"guarded copy", func() {
			src, dst := make([]byte, 32), make([]byte, 32)
			copyAsm(dst, src, guardCanary, ^uint64(0))
		}},
		{"watch", func() { WatchSignals().End() }},
	} {
		for i := range rounds {
			w := WatchSignals()
			var pattern [16]byte
			rand.Read(pattern[:])
			signalProbe(&pattern)
			inner.run()
			w.End()
			if onStack(stack, pattern[:]) {
				t.Errorf("%s: marker found on the signal stack after watched signal %d", inner.name, i)
			}
		}
	}
}
