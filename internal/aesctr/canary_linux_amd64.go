package aesctr

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/cpu"
	"golang.org/x/sys/unix"
)

// The layout of the FPU area of an x86-64 signal frame (the kernel's
// fpu__alloc_mathframe and copy_fpstate_to_sigframe): it starts at
// round_down(top - size, 64), where top is the top of the signal stack and
// size the task's XSAVE area size plus 4 bytes for FP_XSTATE_MAGIC2; the
// XMM registers are at offset 160, and the kernel's _fpx_sw_bytes at 464.
const (
	fxXMM        = 160
	fxSwBytes    = 464
	fpMagic1     = 0x46505853 // FP_XSTATE_MAGIC1
	fpMagic2     = 0x46505845 // FP_XSTATE_MAGIC2
	xtileData    = 18         // the XSAVE component Linux enables per task
	probeXMMRegs = 14         // X0-X13, as probeSignalAsm loads them
)

// sigaltstackT is the kernel's stack_t on amd64.
type sigaltstackT struct {
	sp    uintptr
	flags int32
	_     int32
	size  uintptr
}

// setupCanary decides whether guardCanary may be used in this process and
// sets canaryFrame and canaryFrameMax for it.
func setupCanary() bool {
	frame, frameMax, ok := verifyCanary()
	if !ok {
		return false
	}
	canaryFrame, canaryFrameMax = frame, frameMax
	if !checkCanary() {
		canaryFrame, canaryFrameMax = 0, 0
		return false
	}
	return true
}

// verifyCanary checks, on a locked thread, everything guardCanary assumes
// and returns the two frame sizes it plants its canaries for:
//
//   - the runtime layout: g.m.procid is the thread id the kernel reports,
//     g.m.curg is g, and g.m.gsignal.stack is exactly the signal stack the
//     kernel has for the thread (sigaltstack), enabled and not in use;
//   - the frame: a signal sent to the thread while X0-X13 hold a random
//     pattern leaves the pattern in 14 consecutive 16-byte slots whose
//     start, less 160, is the 64-byte-aligned round_down(top - size, 64)
//     for the size the kernel wrote beside FP_XSTATE_MAGIC1 in that frame,
//     and FP_XSTATE_MAGIC2 ends it;
//   - the sizes a frame can take: the enabled XSAVE components (XCR0) are
//     those of the frame, or those plus XTILEDATA, which Linux adds to the
//     state of a thread only once it uses AMX, making its frames larger.
//     The two sizes are those of the standard format without and with
//     XTILEDATA (CPUID leaf 0DH), and the frame seen must have the size of
//     its own components. Any other difference, a CPU without XSAVE, or a
//     Go release whose layout was not checked, and the guard is not used.
//
// Another signal that lands on the thread between the probe and the search
// overwrites the pattern; the check is then repeated a few times.
func verifyCanary() (frame, frameMax uint64, ok bool) {
	if !supported || !layoutKnown || !cpu.X86.HasOSXSAVE {
		return 0, 0, false
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for range 4 {
		if frame, frameMax, ok = probeFrame(); ok {
			return frame, frameMax, true
		}
	}
	return 0, 0, false
}

// threadSignalStack returns the calling thread's signal stack as the
// runtime records it, after checking it against the kernel's. The caller
// has locked the thread.
func threadSignalStack() (stack []byte, ok bool) {
	var st threadState
	threadStateAsm(&st)
	if st.procid != uint64(unix.Gettid()) || st.curg != st.g || ranC(&st) {
		return nil, false
	}
	var ss sigaltstackT
	if _, _, errno := unix.RawSyscall(unix.SYS_SIGALTSTACK, 0, uintptr(unsafe.Pointer(&ss)), 0); errno != 0 {
		return nil, false
	}
	if !sameStack(&st, &ss) || st.hi-st.lo < 16<<10 {
		return nil, false
	}
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), ss.sp)), ss.size), true
}

// ranC reports whether C code may have run on the thread or own its signal
// stack, as GUARDENTER decides it: a cgo call other than the runtime's own
// first one on m0, an M that C created (isextra), or a signal stack the
// runtime adopted rather than set (newSigstack false). On the thread of
// the start-up check they must read 0 and 1 exactly: any other byte there,
// a wrong offset included, keeps guardCanary from being used.
func ranC(st *threadState) bool {
	return st.ncgocall > 1 || st.ncgocall == 1 && st.id != 0 ||
		st.isextra != 0 || st.newSigstack != 1
}

// probeFrame is one attempt of verifyCanary.
func probeFrame() (frame, frameMax uint64, ok bool) {
	stack, ok := threadSignalStack()
	if !ok {
		return 0, 0, false
	}
	var pattern [16]byte
	if _, err := rand.Read(pattern[:]); err != nil {
		return 0, 0, false
	}
	probeSignalAsm(&pattern, int(unix.SIGURG), guardOff, 0)
	at := bytes.Index(stack, pattern[:])
	fx := at - fxXMM
	if at < 0 || fx < 0 || fx+fxSwBytes+24 > len(stack) {
		return 0, 0, false
	}
	for i := range probeXMMRegs {
		if !bytes.Equal(stack[at+16*i:at+16*i+16], pattern[:]) {
			return 0, 0, false
		}
	}
	sw := stack[fx+fxSwBytes:]
	magic1 := binary.LittleEndian.Uint32(sw)
	size := uint64(binary.LittleEndian.Uint32(sw[4:]))
	features := binary.LittleEndian.Uint64(sw[8:])
	xsize := uint64(binary.LittleEndian.Uint32(sw[16:]))
	top := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(stack)))) + uint64(len(stack))
	base := uint64(uintptr(unsafe.Pointer(&stack[fx])))
	if magic1 != fpMagic1 || size != xsize+4 || base != (top-size)&^63 ||
		binary.LittleEndian.Uint32(stack[fx+int(xsize):]) != fpMagic2 {
		return 0, 0, false
	}
	xcr0 := xcr0Asm()
	small, large := xsaveSize(xcr0&^(1<<xtileData))+4, xsaveSize(xcr0)+4
	if features&^xcr0 != 0 || xcr0&^features&^(1<<xtileData) != 0 || size != xsaveSize(features)+4 {
		return 0, 0, false
	}
	clear(stack[fx : fx+int(xsize)])
	return small, large, true
}

// xsaveSize is the size of the standard-format XSAVE area holding the state
// components in mask, as the kernel sizes a signal frame's FPU state: the
// 512-byte legacy area and the 64-byte header, then each component at its
// architectural offset.
func xsaveSize(mask uint64) uint64 {
	size := uint64(576)
	for i := uint32(2); i < 64; i++ {
		if mask&(1<<i) != 0 {
			off, n := xsaveComponentAsm(i)
			size = max(size, uint64(off)+uint64(n))
		}
	}
	return size
}

// checkCanary runs the probe under guardCanary, once canaryFrame and
// canaryFrameMax are set: the canary must catch the signal, and the wipe
// must leave no copy of the pattern on the signal stack.
func checkCanary() bool {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	stack, ok := threadSignalStack()
	if !ok {
		return false
	}
	var pattern [16]byte
	if _, err := rand.Read(pattern[:]); err != nil {
		return false
	}
	hits := atomic.LoadUint64(&canaryHits)
	probeSignalAsm(&pattern, int(unix.SIGURG), guardCanary, 0)
	return atomic.LoadUint64(&canaryHits) > hits && !bytes.Contains(stack, pattern[:])
}

// probeSignalAsm loads pattern into X0-X13, sends signal sig to its own
// thread, which the kernel delivers (saving the registers in a frame on the
// thread's signal stack) before tgkill returns, and clears the registers,
// all under the guard guard with threshold ticks. See verifyCanary.
//
//go:noescape
func probeSignalAsm(pattern *[16]byte, sig int, guard uint8, ticks uint64)

// threadState is what threadStateAsm reads for the calling thread through
// the offsets of layout_linux_amd64.go.
type threadState struct {
	g        uint64 // the running g, from thread-local storage
	procid   uint64 // g.m.procid: the thread id
	curg     uint64 // g.m.curg
	ncgocall uint64 // g.m.ncgocall
	id       uint64 // g.m.id
	ncgo     uint64 // g.m.ncgo: cgo calls under way, C having called back into Go
	lo, hi   uint64 // g.m.gsignal.stack

	isextra     uint64 // g.m.isextra, 0 or 1
	newSigstack uint64 // g.m.newSigstack, 0 or 1
}

// threadStateAsm fills st for the calling thread.
//
//go:noescape
func threadStateAsm(st *threadState)

// xcr0Asm returns XCR0, the state components enabled for XSAVE. The caller
// checks OSXSAVE first.
func xcr0Asm() uint64

// xsaveComponentAsm returns the offset and size of XSAVE state component i
// in the standard format.
func xsaveComponentAsm(i uint32) (offset, size uint32)

// canaryFrame and canaryFrameMax are the sizes, counted from the top of a
// thread's signal stack, of the smallest and largest area the kernel takes
// for the FPU state of a signal frame there (see verifyCanary). They are set
// once, before guardCanary is first used, and then only read, by the
// assembly.
var canaryFrame, canaryFrameMax uint64

// amxTouchAsm uses AMX tile data once, so that the kernel gives the thread
// the larger signal frame. Only tests call it, once the process has AMX
// permission.
//
//go:noescape
func amxTouchAsm(cfg *[64]byte)
