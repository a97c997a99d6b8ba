package aesctr

//lint:file-ignore U1000 the signal-stack canaries run on Linux only, but the amd64 assembly that uses these is built for every amd64 system.

import "golang.org/x/sys/cpu"

// supported is fixed at start-up: AESENC and AESKEYGENASSIST need AES-NI,
// PINSRQ (building counter blocks) needs SSE4.1, and PSHUFB needs SSSE3,
// which every SSE4.1 CPU has but is checked anyway.
var supported = cpu.X86.HasAES && cpu.X86.HasSSE41 && cpu.X86.HasSSSE3

// expandKeyAsm writes the 15 AES-256 round keys for key into rk, under the
// signal guard guard (guardOff, guardBlock, or guardDetect with threshold
// ticks; see aesctr_amd64.s).
//
//go:noescape
func expandKeyAsm(rk *[RoundKeysSize]byte, key *[32]byte, guard uint8, ticks uint64)

// xorKeyStreamAsm implements XOR once its preconditions are checked: len(dst)
// == len(src), no inexact overlap, and the CPU features present. guard and
// ticks are as for expandKeyAsm.
//
//go:noescape
func xorKeyStreamAsm(rk *[RoundKeysSize]byte, salt *[8]byte, base uint64, dst, src []byte, scratch *[16]byte, guard uint8, ticks uint64)

// copyAsm copies src to the start of dst, which is at least as long and
// does not overlap it. guard and ticks are as for expandKeyAsm.
//
//go:noescape
func copyAsm(dst, src []byte, guard uint8, ticks uint64)

// syscallTicksAsm returns the fewest time stamp counter ticks any of n > 0
// getppid round trips took.
func syscallTicksAsm(n int) uint64

// invariantTSCAsm reports whether the time stamp counter runs at a constant
// rate whatever the power state of the core.
func invariantTSCAsm() bool

// probeSignalAsm loads pattern into X0-X13, sends signal sig to its own
// thread, which the kernel delivers (saving the registers in a frame on the
// thread's signal stack) before tgkill returns, and clears the registers,
// all under the guard guard with threshold ticks. See verifyCanary.
//
//go:noescape
func probeSignalAsm(pattern *[16]byte, sig int, guard uint8, ticks uint64)

// threadState is what threadStateAsm reads for the calling thread through
// the offsets of layout_amd64.go.
type threadState struct {
	g        uint64 // the running g, from thread-local storage
	procid   uint64 // g.m.procid: the thread id
	curg     uint64 // g.m.curg
	ncgocall uint64 // g.m.ncgocall
	id       uint64 // g.m.id
	lo, hi   uint64 // g.m.gsignal.stack
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

// xor2KeyStreamAsm implements XOR2 once its preconditions are checked.
// guard and ticks are as for expandKeyAsm.
//
//go:noescape
func xor2KeyStreamAsm(rkA *[RoundKeysSize]byte, saltA *[8]byte, baseA uint64, rkB *[RoundKeysSize]byte, saltB *[8]byte, baseB uint64, data []byte, scratch *[16]byte, guard uint8, ticks uint64)
