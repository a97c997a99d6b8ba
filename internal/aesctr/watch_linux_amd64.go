package aesctr

import (
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// watchSignals plants, from Go, the canaries the assembly's guardCanary
// plants (CANARYENTER in guard_amd64.h), under the same conditions: the
// start-up check passed, and the thread has run no C code that could have
// moved its signal stack. Locking the thread keeps the goroutine on the M
// whose signal stack holds the canaries.
//
//go:norace
func watchSignals() SignalWatch {
	if !autoGuards().canary || forced != nil && forced.guard == guardOff {
		return SignalWatch{}
	}
	runtime.LockOSThread()
	var st threadState
	threadStateAsm(&st)
	if st.curg != st.g || ranC(&st) || st.hi < canaryFrameMax || canaryAt(st.hi, canaryFrameMax) < st.lo {
		runtime.UnlockOSThread()
		return SignalWatch{}
	}
	w := SignalWatch{top: uintptr(st.hi)}
	*w.canary(canaryFrame) = 0
	*w.canary(canaryFrameMax) = 0
	return w
}

// end checks the canaries as CANARYEXIT does and wipes the signal stack
// the kernel has for the thread, if it is not in use, as GUARDEXIT does.
//
//go:norace
func (w SignalWatch) end() {
	if *w.canary(canaryFrame)|*w.canary(canaryFrameMax) != 0 {
		atomic.AddUint64(&canaryHits, 1)
		var ss sigaltstackT
		_, _, errno := unix.RawSyscall(unix.SYS_SIGALTSTACK, 0, uintptr(unsafe.Pointer(&ss)), 0)
		if errno == 0 && ss.flags&(ssOnStack|ssDisable) == 0 {
			// A signal taken during the wipe runs its handler to the end
			// on this thread before the wipe goes on, so the wipe never
			// clears a frame that is still live.
			clear(unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), ss.sp)), ss.size))
		}
	}
	runtime.UnlockOSThread()
}

// The flags of a stack_t that mean the signal stack is in use or off.
const (
	ssOnStack = 1
	ssDisable = 2
)

// canaryAt is where, on a signal stack whose top is top, the FPU state of
// a signal frame of size bytes starts (round_down(top - size, 64)).
func canaryAt(top, size uint64) uint64 { return (top - size) &^ 63 }

// canary is the word the kernel sets to FP_XSTATE_MAGIC1 in a frame of
// size bytes on the watched signal stack.
func (w SignalWatch) canary(size uint64) *uint32 {
	return (*uint32)(unsafe.Add(unsafe.Pointer(nil), uintptr(canaryAt(uint64(w.top), size))+fxSwBytes))
}

func signalProbe(marker *[16]byte) bool {
	if !autoGuards().canary {
		return false
	}
	probeSignalAsm(marker, int(unix.SIGURG), guardOff, 0)
	return true
}
