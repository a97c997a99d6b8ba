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
	if !canaryReady() || forced != nil && forced.guard == guardOff {
		return SignalWatch{}
	}
	runtime.LockOSThread()
	var st threadState
	threadStateAsm(&st)
	near := (st.hi - canaryFrame) &^ 63
	far := (st.hi - canaryFrameMax) &^ 63
	if st.curg != st.g || ranC(st) || far < st.lo || st.hi < canaryFrameMax {
		runtime.UnlockOSThread()
		return SignalWatch{}
	}
	*magicAt(uintptr(near)) = 0
	*magicAt(uintptr(far)) = 0
	return SignalWatch{canaries: [2]uintptr{uintptr(near), uintptr(far)}}
}

// end checks the canaries as CANARYEXIT does and wipes the signal stack
// the kernel has for the thread, if it is not in use, as GUARDEXIT does.
//
//go:norace
func (w SignalWatch) end() {
	if *magicAt(w.canaries[0])|*magicAt(w.canaries[1]) != 0 {
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

// magicAt is where the kernel writes FP_XSTATE_MAGIC1 in a frame whose FPU
// state starts at fx.
func magicAt(fx uintptr) *uint32 {
	return (*uint32)(unsafe.Add(unsafe.Pointer(nil), fx+fxSwBytes))
}
