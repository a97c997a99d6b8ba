package aesctr

import (
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// watchSignals plants, from Go, the canaries the assembly's guardCanary
// plants (CANARYENTER in guard_amd64.h), where the start-up check passed.
// Locking the thread keeps the goroutine on the M whose signal stack holds
// the canaries.
//
// On a thread that has run C code the assembly does not trust the signal
// stack the runtime recorded, since C may have moved it, and falls back to
// another guard. The foreign calls watched here can take milliseconds (an
// RSA signature), too long to hold signals for, and the threads of a
// program that uses cgo at all (a DNS lookup, os/user) soon have all run C
// code: so the watch asks the kernel where the thread's signal stack is,
// one system call, and plants the canaries if it is still the runtime's.
// C code called from inside the watch could move it again; nothing here
// calls any.
//
//go:norace
func watchSignals() SignalWatch {
	if !autoGuards().canary || forced != nil && forced.guard == guardOff {
		return SignalWatch{}
	}
	runtime.LockOSThread()
	var st threadState
	threadStateAsm(&st)
	if st.curg != st.g || st.hi < canaryFrameMax || canaryAt(st.hi, canaryFrameMax) < st.lo ||
		ranC(&st) && !kernelStackIsRecorded(&st) {
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
// It also checks the word where each frame it watches for ends, which the
// kernel sets to FP_XSTATE_MAGIC2 and which only a wipe of the stack
// clears. The watched code may be the caller's (a MAC's hash, a Sign's
// rand) and call back into the library, whose guarded routines and
// watches plant the canaries again: a frame that landed before then left
// only that word as its sign, and was left on the stack. That word may be
// set by a frame older than the watch too; the wipe it then costs comes
// once per such frame, as the wipe clears it.
//
//go:norace
func (w SignalWatch) end() {
	if *w.canary(canaryFrame)|*w.canary(canaryFrameMax)|*w.frameEnd(canaryFrame)|*w.frameEnd(canaryFrameMax) != 0 {
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

// kernelStackIsRecorded reports whether the signal stack the kernel has for
// the calling thread is the one the runtime recorded in st, enabled and not
// in use.
//
// The system call costs far more than the rest of the watch, so an answer
// of yes is remembered for the M, with its count of cgo calls. The C code
// of a program (and of the libraries cgo links in) runs on a thread Go made
// only inside a cgo call, which adds to the count before C runs, so only
// another one can have moved the stack since; the runtime's own calls into
// C (mmap, setenv, sigaction, the cgo traceback hooks) are not counted and
// do not move it. An answer given while C has called back into Go (ncgo
// not 0) is not remembered: C may move the stack before it calls again or
// returns, with the count unchanged. Neither is one on a thread that C
// created (isextra) or whose stack the runtime adopted from C (newSigstack
// false), whose C code runs outside any cgo call of its own.
func kernelStackIsRecorded(st *threadState) bool {
	remember := st.isextra == 0 && st.newSigstack == 1 && st.ncgo == 0
	slot := &checkedStacks[st.id%uint64(len(checkedStacks))]
	if c := slot.Load(); remember && c != nil && c.id == st.id && c.ncgocall == st.ncgocall {
		if c.lo == st.lo && c.hi == st.hi {
			return true
		}
		if c.lo == 0 && c.hi == 0 {
			return false // the kernel said no since the M's last cgo call
		}
	}
	var ss sigaltstackT
	_, _, errno := unix.RawSyscall(unix.SYS_SIGALTSTACK, 0, uintptr(unsafe.Pointer(&ss)), 0)
	ok := errno == 0 && sameStack(st, &ss)
	if remember {
		c := &checkedStack{id: st.id, ncgocall: st.ncgocall}
		if ok {
			c.lo, c.hi = st.lo, st.hi
		}
		slot.Store(c)
	}
	return ok
}

// checkedStack is the kernel's answer for an M: its id, its count of cgo
// calls then, and the stack it confirmed, or lo and hi 0 where it said the
// M's signal stack is not the runtime's (which no runtime stack matches).
type checkedStack struct{ id, ncgocall, lo, hi uint64 }

// checkedStacks holds the last confirmation for each M, by id: an M whose
// slot another has taken is asked again, which costs the system call and a
// 32-byte allocation (a program with more than 256 threads running watches
// or guarded calls pays it where their ids collide). The assembly's
// CANARYENTER reads it too, with the layout of checkedStack.
var checkedStacks [checkedSlots]atomic.Pointer[checkedStack]

// checkedSlots is the size of checkedStacks, a power of two.
const checkedSlots = 256

// confirmThread asks the kernel about the calling thread's signal stack if
// its M is miss, the one the assembly noted (cgoMiss), so that the
// assembly plants its canaries there again until the M's next cgo call. It
// runs from pickGuard, before a guarded call, and never inside a watch.
// On any other M it costs a read of the thread's state.
func confirmThread(miss uint64) {
	runtime.LockOSThread()
	var st threadState
	threadStateAsm(&st)
	if st.id+1 == miss && atomic.CompareAndSwapUint64(&cgoMiss, miss, 0) && st.curg == st.g && ranC(&st) {
		kernelStackIsRecorded(&st)
	}
	runtime.UnlockOSThread()
}

// sameStack reports whether ss, as the kernel reports it, is st's signal
// stack, enabled and not in use.
func sameStack(st *threadState, ss *sigaltstackT) bool {
	return ss.flags == 0 && uint64(ss.sp) == st.lo && uint64(ss.sp+ss.size) == st.hi
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

// frameEnd is the word the kernel sets to FP_XSTATE_MAGIC2, at the end of
// the FPU state of a frame of size bytes (see probeFrame), on the watched
// signal stack. The guarded routines' canaries do not include it.
func (w SignalWatch) frameEnd(size uint64) *uint32 {
	return (*uint32)(unsafe.Add(unsafe.Pointer(nil), uintptr(canaryAt(uint64(w.top), size)+size-4)))
}

func signalProbe(marker *[16]byte) bool {
	if !autoGuards().canary {
		return false
	}
	probeSignalAsm(marker, int(unix.SIGURG), guardOff, 0)
	return true
}
