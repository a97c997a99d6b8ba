#include "textflag.h"
#include "go_asm.h"
#include "guard_amd64.h"

// The routines the start-up check of guardCanary (canary_linux_amd64.go)
// and its tests use.

// func probeSignalAsm(pattern *[16]byte, sig int, guard uint8, ticks uint64)
//
// Loads pattern into X0-X13, sends signal sig to its own thread, which the
// kernel delivers on the way out of tgkill and so saves the pattern in a
// signal frame, then clears the registers, all under the guard: what the
// start-up check of guardCanary and the tests use to see where a frame
// lands and that the guard catches it.
TEXT ·probeSignalAsm(SB), NOSPLIT, $56-32
	GUARDENTER(guard+16(FP), ticks+24(FP), probeNoCgo, probeCgo, probeCgoMiss, probeNoCanary, probeFallback, probeDetect, probeBlock, probeEntered)
	MOVQ  pattern+0(FP), AX
	MOVOU (AX), X0
	MOVO  X0, X1
	MOVO  X0, X2
	MOVO  X0, X3
	MOVO  X0, X4
	MOVO  X0, X5
	MOVO  X0, X6
	MOVO  X0, X7
	MOVO  X0, X8
	MOVO  X0, X9
	MOVO  X0, X10
	MOVO  X0, X11
	MOVO  X0, X12
	MOVO  X0, X13
	MOVQ  $SYS_getpid, AX
	SYSCALL
	MOVQ  AX, R12
	MOVQ  $SYS_gettid, AX
	SYSCALL
	MOVQ  AX, SI
	MOVQ  R12, DI
	MOVQ  sig+8(FP), DX
	MOVQ  $SYS_tgkill, AX
	SYSCALL
	PXOR  X0, X0
	PXOR  X1, X1
	PXOR  X2, X2
	PXOR  X3, X3
	PXOR  X4, X4
	PXOR  X5, X5
	PXOR  X6, X6
	PXOR  X7, X7
	PXOR  X8, X8
	PXOR  X9, X9
	PXOR  X10, X10
	PXOR  X11, X11
	PXOR  X12, X12
	PXOR  X13, X13
	GUARDEXIT(ticks+24(FP), probeNotDetect, probeWipe, probeRestore, probeLeft)
	RET

// func threadStateAsm(st *threadState)
//
// Reads, for the calling thread, what guardCanary relies on: g from
// thread-local storage, g.m, and the fields of m and of m.gsignal at the
// offsets of layout_linux_amd64.go, for Go code to check against the kernel.
TEXT ·threadStateAsm(SB), NOSPLIT, $0-8
	MOVQ st+0(FP), DI
	MOVQ TLS, CX
	MOVQ 0(CX)(TLS*1), CX
	MOVQ CX, threadState_g(DI)
	MOVQ const_offGM(CX), CX
	MOVQ const_offMProcid(CX), AX
	MOVQ AX, threadState_procid(DI)
	MOVQ const_offMCurg(CX), AX
	MOVQ AX, threadState_curg(DI)
	MOVQ const_offMNcgocall(CX), AX
	MOVQ AX, threadState_ncgocall(DI)
	MOVQ const_offMID(CX), AX
	MOVQ AX, threadState_id(DI)
	MOVLQSX const_offMNcgo(CX), AX
	MOVQ AX, threadState_ncgo(DI)
	MOVBLZX const_offMIsextra(CX), AX
	MOVQ AX, threadState_isextra(DI)
	MOVBLZX const_offMNewSigstack(CX), AX
	MOVQ AX, threadState_newSigstack(DI)
	MOVQ const_offMGsignal(CX), CX
	MOVQ const_offGStackLo(CX), AX
	MOVQ AX, threadState_lo(DI)
	MOVQ const_offGStackHi(CX), AX
	MOVQ AX, threadState_hi(DI)
	RET

// func xcr0Asm() uint64
//
// XCR0: the state components the kernel has enabled for XSAVE, which the
// caller has checked OSXSAVE for.
TEXT ·xcr0Asm(SB), NOSPLIT, $0-8
	XORL   CX, CX
	XGETBV
	SHLQ   $32, DX
	ORQ    DX, AX
	MOVQ   AX, ret+0(FP)
	RET

// func xsaveComponentAsm(i uint32) (offset, size uint32)
//
// The offset and size of XSAVE state component i in the standard format
// (CPUID leaf 0DH, sub-leaf i).
TEXT ·xsaveComponentAsm(SB), NOSPLIT, $0-16
	MOVL $0x0d, AX
	MOVL i+0(FP), CX
	CPUID
	MOVL BX, offset+8(FP)
	MOVL AX, size+12(FP)
	RET

// func amxTouchAsm(cfg *[64]byte)
//
// Loads the AMX tile configuration cfg, zeroes tile 0 and releases the
// tiles: the first use of tile data, after which Linux gives the thread
// its larger XSAVE state, and its signal frames their larger size. Only
// tests call it, after asking the kernel for AMX (ARCH_REQ_XCOMP_PERM).
// The Go assembler has no AMX mnemonics, hence the encodings.
TEXT ·amxTouchAsm(SB), NOSPLIT, $0-8
	MOVQ cfg+0(FP), DI
	BYTE $0xc4; BYTE $0xe2; BYTE $0x78; BYTE $0x49; BYTE $0x07 // LDTILECFG (DI)
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x49; BYTE $0xc0 // TILEZERO TMM0
	BYTE $0xc4; BYTE $0xe2; BYTE $0x78; BYTE $0x49; BYTE $0xc0 // TILERELEASE
	RET
