#include "textflag.h"
#include "go_asm.h"

// The routines keep every secret they compute or move (key words and round
// keys in the expansion, AES states and keystream, the plaintext of the
// blocks they process) in XMM registers, never in memory of their own, and
// clear the registers they used before returning. Their stack frame holds only what
// the signal guard below needs, so nothing secret is ever spilled to the
// goroutine stack, and the runtime does not preempt assembly asynchronously,
// so the register file is never saved there by asyncPreempt either. X15
// (the ABIInternal zero register) and R14/R15 are not touched.
//
// What remains is the kernel: a signal delivered while a routine runs (the
// garbage collector's preemption signal SIGURG, the profiler's SIGPROF)
// makes it save the whole register file, XMM included, in a frame at the
// top of the thread's signal stack, which for a Go thread is ordinary Go
// memory that nothing wipes. The guard argument chooses what to do about it:
//
// guardBlock blocks every asynchronous signal of the thread with
// rt_sigprocmask before the first secret is loaded, and restores the old
// mask only after the registers are cleared: a signal sent meanwhile stays
// pending and is delivered then, with nothing secret left to save. The
// synchronous signals (SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV) stay
// unblocked, as the kernel would otherwise kill the process without letting
// the runtime report the fault. Two syscalls per call.
//
// guardCanary, the usual guard of calls up to 4 KiB, detects the frame
// itself. When the kernel delivers a signal on the thread's signal stack
// (Go's handlers all ask for it), it puts the FPU state of the frame, XMM
// registers at offset 160, at round_down(top - size, 64), where top is the
// top of that stack and size the thread's XSAVE area plus 4, and writes
// FP_XSTATE_MAGIC1 at offset 464 of it, in every frame and never as zero
// (get_sigframe, fpu__alloc_mathframe, copy_fpstate_to_sigframe). So the
// routine finds the signal stack the runtime recorded for the thread
// (g.m.gsignal.stack, through thread-local storage; offsets in
// layout_linux_amd64.go), zeroes that word before the first secret is loaded, and
// reads it after the registers are cleared: not zero means a frame was
// written meanwhile, and the routine wipes the signal stack as guardDetect
// does. A frame has one of two sizes: the default, and the larger one of a
// thread that has used AMX, whose tile data Linux adds to the thread's
// state on first use; a canary is planted for each (canaryFrame,
// canaryFrameMax; the same word when the CPU has no AMX). Four loads, two
// stores and a branch per call, no syscall unless a signal came. The Go
// side checks every assumption at first use (verifyCanary in
// canary_linux_amd64.go: the offsets against the thread id, the running g
// and sigaltstack; the frame's place, size and magic words against a
// signal the routine sends to its own thread; XCR0 against the frame's
// components) and never picks this guard if any check fails. On a thread
// that has made cgo calls (m.ncgocall), which could have moved the signal
// stack, unless Go code has had the kernel confirm the stack since the
// last one (checkedStacks, see CANARYENTER), while C has called back into
// Go (m.ncgo), on a thread created by C that calls into Go (m.isextra), whose
// recorded signal stack C may have moved or freed since, and where the
// runtime adopted C's signal stack rather than set its own
// (m.newSigstack false), the routine falls back to guardDetect, or to
// guardBlock where ticks is 0.
//
// guardDetect, used where the canaries are not, reads the time stamp
// counter before the first secret is loaded
// and after the registers are cleared. A signal taken in between
// adds its delivery and its return through the rt_sigreturn syscall to the
// difference, so a difference of more than ticks (calibrated by Go code
// below one syscall round trip) means a frame may hold secrets: then the
// routine asks the kernel for the thread's signal stack and zeroes all of
// it. The stack is not in use (the routine does not run on it, and a signal
// arriving during the wipe runs its handler to completion before the wipe
// goes on, with nothing secret in the registers it saves). No syscall
// unless the check fires.
//
// The syscalls are made here rather than from Go so that the goroutine
// cannot move to another thread in between: each routine is NOSPLIT
// assembly with no call, so it runs start to end on one thread.
//
// Frame: see the frame* offsets below.

#include "guard_amd64.h"

// func syscallTicksAsm(n int) uint64
//
// The fewest time stamp counter ticks any of n getppid round trips took:
// what the calibration of guardDetect starts from.
TEXT ·syscallTicksAsm(SB), NOSPLIT, $0-16
	MOVQ n+0(FP), R8
	MOVQ $-1, R9

calibrate:
	RDTSC
	SHLQ    $32, DX
	ORQ     DX, AX
	MOVQ    AX, R12
	MOVQ    $110, AX // getppid
	SYSCALL
	RDTSC
	SHLQ    $32, DX
	ORQ     DX, AX
	SUBQ    R12, AX
	CMPQ    AX, R9
	CMOVQCS AX, R9
	DECQ    R8
	JNZ     calibrate
	MOVQ    R9, ret+8(FP)
	RET

// func invariantTSCAsm() bool
//
// Whether the time stamp counter ticks at a constant rate in every power
// state (CPUID 80000007H, EDX bit 8), which guardDetect's calibration
// assumes.
TEXT ·invariantTSCAsm(SB), NOSPLIT, $0-1
	MOVL  $0x80000000, AX
	CPUID
	CMPL  AX, $0x80000007
	JB    noInvariant
	MOVL  $0x80000007, AX
	CPUID
	SHRL  $8, DX
	ANDL  $1, DX
	MOVB  DX, ret+0(FP)
	RET

noInvariant:
	MOVB $0, ret+0(FP)
	RET

// Key expansion.
//
// X0 and X2 hold the two most recent round keys (even and odd index). Each
// step derives the next round key from the one two positions back (prefix-XOR
// of its four words) and a word taken from AESKEYGENASSIST of the previous
// round key: word 3 (SubWord(RotWord(w)) ^ rcon) for even round keys, word 2
// (SubWord(w), no rotation) for odd ones, as FIPS-197 section 5.2 requires for
// 256-bit keys. X1 and X3 are temporaries.

// PREFIXXOR sets each word i of x to the XOR of its words 0..i.
#define PREFIXXOR(x) \
	MOVO   x, X3    \
	PSLLDQ $4, X3   \
	PXOR   X3, x    \
	PSLLDQ $4, X3   \
	PXOR   X3, x    \
	PSLLDQ $4, X3   \
	PXOR   X3, x

// COPYBYTES copies the CX (1 to 15) bytes at from to to, a byte at a
// time, through R10 and R11.
#define COPYBYTES(loop, from, to)  \
	XORQ    R10, R10               \
loop:                                  \
	MOVBLZX (from)(R10*1), R11     \
	MOVB    R11, (to)(R10*1)       \
	INCQ    R10                    \
	CMPQ    R10, CX                \
	JB      loop

// PARTIALXOR XORs the CX (1 to 15) bytes at SI with the keystream block in
// X0 into DI, through the caller's scratch block at R9: copy the source
// bytes into the zeroed block, XOR it in place, copy the result out. The
// rest of the block then holds keystream until the caller wipes it. It
// clobbers X8, R10 and R11.
#define PARTIALXOR(copyin, copyout) \
	PXOR    X8, X8                 \
	MOVOU   X8, (R9)               \
	COPYBYTES(copyin, SI, R9)      \
	MOVOU   (R9), X8               \
	PXOR    X0, X8                 \
	MOVOU   X8, (R9)               \
	COPYBYTES(copyout, R9, DI)

#define EXPAND_EVEN(rcon, off)         \
	AESKEYGENASSIST $rcon, X2, X1  \
	PSHUFD          $0xff, X1, X1  \
	PREFIXXOR(X0)                  \
	PXOR            X1, X0         \
	MOVOU           X0, off(AX)

#define EXPAND_ODD(off)                \
	AESKEYGENASSIST $0x00, X0, X1  \
	PSHUFD          $0xaa, X1, X1  \
	PREFIXXOR(X2)                  \
	PXOR            X1, X2         \
	MOVOU           X2, off(AX)

// func expandKeyAsm(rk *[RoundKeysSize]byte, key *[32]byte, guard uint8, ticks uint64)
TEXT ·expandKeyAsm(SB), NOSPLIT, $56-32
	GUARDENTER(guard+16(FP), ticks+24(FP), expandNoCgo, expandCgo, expandCgoMiss, expandNoCanary, expandFallback, expandDetect, expandBlock, expandEntered)
	MOVQ  rk+0(FP), AX
	MOVQ  key+8(FP), BX
	MOVOU (BX), X0
	MOVOU 16(BX), X2
	MOVOU X0, 0(AX)
	MOVOU X2, 16(AX)
	EXPAND_EVEN(0x01, 32)
	EXPAND_ODD(48)
	EXPAND_EVEN(0x02, 64)
	EXPAND_ODD(80)
	EXPAND_EVEN(0x04, 96)
	EXPAND_ODD(112)
	EXPAND_EVEN(0x08, 128)
	EXPAND_ODD(144)
	EXPAND_EVEN(0x10, 160)
	EXPAND_ODD(176)
	EXPAND_EVEN(0x20, 192)
	EXPAND_ODD(208)
	EXPAND_EVEN(0x40, 224)
	PXOR  X0, X0
	PXOR  X1, X1
	PXOR  X2, X2
	PXOR  X3, X3
	GUARDEXIT(ticks+24(FP), expandNotDetect, expandWipe, expandRestore, expandLeft)
	RET

// Counter mode.
//
// Registers in xorKeyStreamAsm:
//	AX	round keys
//	DX	counter value of the next block to encrypt
//	SI, DI	next source and destination byte
//	CX	bytes left
//	R8	scratch register for building counter blocks
//	R9	caller's scratch block
//	X0-X7	AES states, then keystream
//	X8	source blocks
//	X9	salt in the low quadword, zero in the high one
//	X10	in loop8: salt, then the next counter value in native (little-
//		endian) order; PSHUFB with X12 turns it into the counter block
//	X11	1 in the high quadword: the increment for X10
//	X12	byte shuffle that keeps bytes 0-7 and reverses bytes 8-15

// CTRBLK puts counter block DX+j into x: the salt as given in bytes 0-7 and
// the counter value big-endian in bytes 8-15. The caller guarantees that the
// counter values of the blocks it uses do not wrap; the discarded blocks past
// the end of a short tail may wrap, which is harmless.
#define CTRBLK(j, x)         \
	LEAQ   j(DX), R8     \
	BSWAPQ R8            \
	MOVO   X9, x         \
	PINSRQ $1, R8, x

// Each ROUNDn applies one round key to n states, so the n AESENCs are
// independent and overlap in the pipeline. The round key is a memory
// operand of each instruction rather than loaded into a register once: a
// register snapshot taken in the middle (a synchronous signal's frame, a
// debugger stopping the thread) then holds AES states, never a round key.
// The loads cost nothing measurable, as the AESENCs bound the throughput,
// but legacy SSE memory operands must be 16-byte aligned, so XOR requires rk
// to be.
#define ROUND1(op, off) \
	op    off(AX), X0

#define ROUND2(op, off) \
	ROUND1(op, off)   \
	op    off(AX), X1

#define ROUND4(op, off) \
	ROUND2(op, off)   \
	op    off(AX), X2 \
	op    off(AX), X3

#define ROUND8(op, off) \
	ROUND4(op, off)   \
	op    off(AX), X4 \
	op    off(AX), X5 \
	op    off(AX), X6 \
	op    off(AX), X7

// AES256 runs the 14 rounds of AES-256 with ROUNDn.
#define AES256(round)      \
	round(PXOR, 0)         \
	round(AESENC, 16)      \
	round(AESENC, 32)      \
	round(AESENC, 48)      \
	round(AESENC, 64)      \
	round(AESENC, 80)      \
	round(AESENC, 96)      \
	round(AESENC, 112)     \
	round(AESENC, 128)     \
	round(AESENC, 144)     \
	round(AESENC, 160)     \
	round(AESENC, 176)     \
	round(AESENC, 192)     \
	round(AESENC, 208)     \
	round(AESENCLAST, 224)

// XORBLK writes source block off XOR keystream x to the destination. The
// source block is read before the destination block is written, so dst == src
// works.
#define XORBLK(off, x)     \
	MOVOU off(SI), X8  \
	PXOR  x, X8        \
	MOVOU X8, off(DI)

// func xorKeyStreamAsm(rk *[RoundKeysSize]byte, salt *[8]byte, base uint64, dst []byte, src []byte, scratch *[16]byte, guard uint8, ticks uint64)
TEXT ·xorKeyStreamAsm(SB), NOSPLIT, $56-96
	GUARDENTER(guard+80(FP), ticks+88(FP), xorNoCgo, xorCgo, xorCgoMiss, xorNoCanary, xorFallback, xorDetect, xorBlock, xorEntered)
	MOVQ rk+0(FP), AX
	MOVQ salt+8(FP), BX
	MOVQ base+16(FP), DX
	MOVQ dst_base+24(FP), DI
	MOVQ src_base+48(FP), SI
	MOVQ src_len+56(FP), CX
	MOVQ scratch+72(FP), R9
	MOVQ (BX), X9
	CMPQ CX, $128
	JB   tail

	// The 8-block loop builds its counter blocks in XMM registers rather
	// than with CTRBLK: moving each counter from a general register costs
	// more vector-port uops than the AESENCs can hide, about 30% of the
	// throughput. X10 is the salt and a little-endian counter; PADDQ only
	// adds to the high quadword, which wraps there rather than carrying
	// into the salt, exactly like the LEAQ of CTRBLK.
	MOVQ   DX, R8
	MOVO   X9, X10
	PINSRQ $1, R8, X10
	MOVOU  ctrIncrement<>(SB), X11
	MOVOU  ctrByteSwap<>(SB), X12

loop8:
	MOVO   X10, X0
	MOVO   X10, X1
	PADDQ  X11, X1
	MOVO   X1, X2
	PADDQ  X11, X2
	MOVO   X2, X3
	PADDQ  X11, X3
	MOVO   X3, X4
	PADDQ  X11, X4
	MOVO   X4, X5
	PADDQ  X11, X5
	MOVO   X5, X6
	PADDQ  X11, X6
	MOVO   X6, X7
	PADDQ  X11, X7
	MOVO   X7, X10
	PADDQ  X11, X10
	PSHUFB X12, X0
	PSHUFB X12, X1
	PSHUFB X12, X2
	PSHUFB X12, X3
	PSHUFB X12, X4
	PSHUFB X12, X5
	PSHUFB X12, X6
	PSHUFB X12, X7
	AES256(ROUND8)
	XORBLK(0, X0)
	XORBLK(16, X1)
	XORBLK(32, X2)
	XORBLK(48, X3)
	XORBLK(64, X4)
	XORBLK(80, X5)
	XORBLK(96, X6)
	XORBLK(112, X7)
	ADDQ $128, SI
	ADDQ $128, DI
	ADDQ $8, DX // for the tail, which uses CTRBLK
	SUBQ $128, CX
	CMPQ CX, $128
	JAE  loop8

	// Fewer than 8 blocks are left, the last possibly partial. They are
	// encrypted together in one batch of 1, 2, 4 or 8 states, the smallest
	// that covers them: a short input then costs the latency of one AES
	// rather than one per block, which is what small entries pay for.
tail:
	TESTQ CX, CX
	JZ    done
	CMPQ  CX, $64
	JA    tail8
	CMPQ  CX, $32
	JA    tail4
	CMPQ  CX, $16
	JA    tail2
	CTRBLK(0, X0)
	AES256(ROUND1)
	JMP   drain

tail2:
	CTRBLK(0, X0)
	CTRBLK(1, X1)
	AES256(ROUND2)
	JMP drain

tail4:
	CTRBLK(0, X0)
	CTRBLK(1, X1)
	CTRBLK(2, X2)
	CTRBLK(3, X3)
	AES256(ROUND4)
	JMP drain

tail8:
	CTRBLK(0, X0)
	CTRBLK(1, X1)
	CTRBLK(2, X2)
	CTRBLK(3, X3)
	CTRBLK(4, X4)
	CTRBLK(5, X5)
	CTRBLK(6, X6)
	CTRBLK(7, X7)
	AES256(ROUND8)

	// Keystream block k is in Xk. Write whole blocks while CX covers them;
	// stop when it ends exactly on a block, or hand the partial block's
	// keystream to partial in X0. MOVOU and PXOR leave the flags of the
	// CMPQ intact.
drain:
	CMPQ CX, $16
	JB   partial
	XORBLK(0, X0)
	JE   done
	CMPQ CX, $32
	JB   partial1
	XORBLK(16, X1)
	JE   done
	CMPQ CX, $48
	JB   partial2
	XORBLK(32, X2)
	JE   done
	CMPQ CX, $64
	JB   partial3
	XORBLK(48, X3)
	JE   done
	CMPQ CX, $80
	JB   partial4
	XORBLK(64, X4)
	JE   done
	CMPQ CX, $96
	JB   partial5
	XORBLK(80, X5)
	JE   done
	CMPQ CX, $112
	JB   partial6
	XORBLK(96, X6)
	JE   done
	JMP  partial7

partial1:
	MOVO X1, X0
	MOVQ $16, R8
	JMP  advance

partial2:
	MOVO X2, X0
	MOVQ $32, R8
	JMP  advance

partial3:
	MOVO X3, X0
	MOVQ $48, R8
	JMP  advance

partial4:
	MOVO X4, X0
	MOVQ $64, R8
	JMP  advance

partial5:
	MOVO X5, X0
	MOVQ $80, R8
	JMP  advance

partial6:
	MOVO X6, X0
	MOVQ $96, R8
	JMP  advance

partial7:
	MOVO X7, X0
	MOVQ $112, R8

advance:
	ADDQ R8, SI
	ADDQ R8, DI
	SUBQ R8, CX

	// 1 to 15 bytes are left and X0 is their keystream block; done wipes
	// the scratch block PARTIALXOR leaves keystream in.
partial:
	PARTIALXOR(copyin, copyout)

done:
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
	MOVOU X0, (R9)
	XORL  R11, R11
	GUARDEXIT(ticks+88(FP), xorNotDetect, xorWipe, xorRestore, xorLeft)
	RET

DATA ctrIncrement<>+0(SB)/8, $0
DATA ctrIncrement<>+8(SB)/8, $1
GLOBL ctrIncrement<>(SB), RODATA|NOPTR, $16

DATA ctrByteSwap<>+0(SB)/8, $0x0706050403020100
DATA ctrByteSwap<>+8(SB)/8, $0x08090a0b0c0d0e0f
GLOBL ctrByteSwap<>(SB), RODATA|NOPTR, $16

// WALK runs the steps of copyAsm and equalAsm over the CX bytes at SI and
// DI: step64 on each 64 bytes, then step16 on each 16, then step1 on each
// byte left, advancing SI and DI past them, and goes on at out. How many
// steps of each kind run depends on CX alone.
#define WALK(step64, step16, step1, l64, l16, l1, out) \
l64:                                    \
	CMPQ  CX, $64                   \
	JB    l16                       \
	step64                          \
	ADDQ  $64, SI                   \
	ADDQ  $64, DI                   \
	SUBQ  $64, CX                   \
	JMP   l64                       \
l16:                                    \
	CMPQ  CX, $16                   \
	JB    l1                        \
	step16                          \
	ADDQ  $16, SI                   \
	ADDQ  $16, DI                   \
	SUBQ  $16, CX                   \
	JMP   l16                       \
l1:                                     \
	TESTQ CX, CX                    \
	JZ    out                       \
	step1                           \
	INCQ  SI                        \
	INCQ  DI                        \
	DECQ  CX                        \
	JMP   l1                        \
out:

#define COPY64 \
	MOVOU 0(SI), X0  \
	MOVOU 16(SI), X1 \
	MOVOU 32(SI), X2 \
	MOVOU 48(SI), X3 \
	MOVOU X0, 0(DI)  \
	MOVOU X1, 16(DI) \
	MOVOU X2, 32(DI) \
	MOVOU X3, 48(DI)

#define COPY16 \
	MOVOU (SI), X0 \
	MOVOU X0, (DI)

#define COPY1 \
	MOVBLZX (SI), R8 \
	MOVB    R8, (DI)

// func copyAsm(dst, src []byte, guard uint8, ticks uint64)
//
// Copies len(src) bytes, which dst has room for, through X0-X3 and R8, and
// clears them: unlike runtime.memmove, which leaves the first and last
// bytes it moved in vector registers, nothing of src stays in a register
// for a later signal to save. dst and src do not overlap.
TEXT ·copyAsm(SB), NOSPLIT, $56-64
	GUARDENTER(guard+48(FP), ticks+56(FP), copyNoCgo, copyCgo, copyCgoMiss, copyNoCanary, copyFallback, copyDetect, copyBlock, copyEntered)
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ src_len+32(FP), CX
	WALK(COPY64, COPY16, COPY1, copy64, copy16, copy1, copied)
	PXOR X0, X0
	PXOR X1, X1
	PXOR X2, X2
	PXOR X3, X3
	XORL R8, R8
	GUARDEXIT(ticks+56(FP), copyNotDetect, copyWipe, copyRestore, copyLeft)
	RET

// The steps of equalAsm OR the XOR of the bytes of a (at SI) and b (at DI)
// into X8, and of the bytes of the last steps into R10, with no branch on
// either: a difference changes the accumulators, never the path.
#define EQUAL64 \
	MOVOU 0(SI), X0  \
	MOVOU 16(SI), X1 \
	MOVOU 32(SI), X2 \
	MOVOU 48(SI), X3 \
	MOVOU 0(DI), X4  \
	MOVOU 16(DI), X5 \
	MOVOU 32(DI), X6 \
	MOVOU 48(DI), X7 \
	PXOR  X4, X0     \
	PXOR  X5, X1     \
	PXOR  X6, X2     \
	PXOR  X7, X3     \
	POR   X1, X0     \
	POR   X3, X2     \
	POR   X2, X0     \
	POR   X0, X8

#define EQUAL16 \
	MOVOU (SI), X0 \
	MOVOU (DI), X4 \
	PXOR  X4, X0   \
	POR   X0, X8

#define EQUAL1 \
	MOVBLZX (SI), R8 \
	MOVBLZX (DI), R9 \
	XORL    R9, R8   \
	ORL     R8, R10

// func equalAsm(a, b []byte, guard uint8, ticks uint64) int
//
// Returns 1 if the len(a) bytes of a equal the first len(a) of b, which
// is at least as long, and 0 otherwise, in a time that depends on len(a)
// alone. The bytes pass through X0-X8 and R8-R10, which are cleared before
// the guard ends, so a signal saves none of them; only the answer, which
// is the caller's, outlives the call.
TEXT ·equalAsm(SB), NOSPLIT, $56-72
	GUARDENTER(guard+48(FP), ticks+56(FP), equalNoCgo, equalCgo, equalCgoMiss, equalNoCanary, equalFallback, equalDetect, equalBlock, equalEntered)
	MOVQ  a_base+0(FP), SI
	MOVQ  a_len+8(FP), CX
	MOVQ  b_base+24(FP), DI
	PXOR  X8, X8
	XORL  R10, R10
	WALK(EQUAL64, EQUAL16, EQUAL1, equal64, equal16, equal1, compared)
	MOVQ  R10, X0
	POR   X0, X8
	XORL  AX, AX
	PTEST X8, X8
	SETEQ AL
	MOVQ  AX, ret+64(FP)
	PXOR  X0, X0
	PXOR  X1, X1
	PXOR  X2, X2
	PXOR  X3, X3
	PXOR  X4, X4
	PXOR  X5, X5
	PXOR  X6, X6
	PXOR  X7, X7
	PXOR  X8, X8
	XORL  R8, R8
	XORL  R9, R9
	XORL  R10, R10
	GUARDEXIT(ticks+56(FP), equalNotDetect, equalWipe, equalRestore, equalLeft)
	RET

// Two keystreams at once, for re-encryption under a new key.
//
// Registers in xor2KeyStreamAsm:
//	AX, BX	round keys of keystreams A and B
//	DX, R12	counter values of the next blocks of A and B
//	SI, DI	next byte of data (read, then written in place)
//	CX	bytes left
//	R8	scratch register for building counter blocks
//	R9	caller's scratch block
//	X0-X3	AES states of A, then A XOR B
//	X4-X7	AES states of B
//	X8	data blocks
//	X9, X10	salts of A and B in the low quadword, zero in the high one

// CTRBLKB is CTRBLK for keystream B.
#define CTRBLKB(j, x)        \
	LEAQ   j(R12), R8    \
	BSWAPQ R8            \
	MOVO   X10, x        \
	PINSRQ $1, R8, x

// ROUNDAB applies one round key of A to X0-X3 and the same round of B to
// X4-X7: eight independent AESENCs, as in ROUND8.
#define ROUNDAB(op, off) \
	op    off(AX), X0 \
	op    off(AX), X1 \
	op    off(AX), X2 \
	op    off(AX), X3 \
	op    off(BX), X4 \
	op    off(BX), X5 \
	op    off(BX), X6 \
	op    off(BX), X7

// func xor2KeyStreamAsm(rkA *[RoundKeysSize]byte, saltA *[8]byte, baseA uint64, rkB *[RoundKeysSize]byte, saltB *[8]byte, baseB uint64, data []byte, scratch *[16]byte, guard uint8, ticks uint64)
TEXT ·xor2KeyStreamAsm(SB), NOSPLIT, $56-96
	GUARDENTER(guard+80(FP), ticks+88(FP), xor2NoCgo, xor2Cgo, xor2CgoMiss, xor2NoCanary, xor2Fallback, xor2Detect, xor2Block, xor2Entered)
	MOVQ rkA+0(FP), AX
	MOVQ saltA+8(FP), R8
	MOVQ (R8), X9
	MOVQ baseA+16(FP), DX
	MOVQ rkB+24(FP), BX
	MOVQ saltB+32(FP), R8
	MOVQ (R8), X10
	MOVQ baseB+40(FP), R12
	MOVQ data_base+48(FP), SI
	MOVQ SI, DI
	MOVQ data_len+56(FP), CX
	MOVQ scratch+72(FP), R9

	// Four blocks of each keystream per step; the last step may compute
	// blocks past the end (whose counter values may wrap, harmlessly: they
	// are never used).
xor2Loop:
	TESTQ CX, CX
	JZ    xor2Done
	CTRBLK(0, X0)
	CTRBLK(1, X1)
	CTRBLK(2, X2)
	CTRBLK(3, X3)
	CTRBLKB(0, X4)
	CTRBLKB(1, X5)
	CTRBLKB(2, X6)
	CTRBLKB(3, X7)
	AES256(ROUNDAB)
	PXOR  X4, X0
	PXOR  X5, X1
	PXOR  X6, X2
	PXOR  X7, X3
	ADDQ  $4, DX
	ADDQ  $4, R12
	CMPQ  CX, $64
	JB    xor2Short
	XORBLK(0, X0)
	XORBLK(16, X1)
	XORBLK(32, X2)
	XORBLK(48, X3)
	ADDQ  $64, SI
	ADDQ  $64, DI
	SUBQ  $64, CX
	JMP   xor2Loop

	// Fewer than 64 bytes are left: whole blocks, shifting the next
	// combined keystream block down into X0, then a partial one.
xor2Short:
	CMPQ  CX, $16
	JB    xor2Partial
	XORBLK(0, X0)
	ADDQ  $16, SI
	ADDQ  $16, DI
	SUBQ  $16, CX
	MOVO  X1, X0
	MOVO  X2, X1
	MOVO  X3, X2
	JMP   xor2Short

	// 1 to 15 bytes are left and X0 is their combined keystream: through
	// the caller's scratch block, as in xorKeyStreamAsm.
xor2Partial:
	TESTQ CX, CX
	JZ    xor2Done
	PARTIALXOR(xor2CopyIn, xor2CopyOut)

xor2Done:
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
	MOVOU X0, (R9)
	XORL  R11, R11
	GUARDEXIT(ticks+88(FP), xor2NotDetect, xor2Wipe, xor2Restore, xor2Left)
	RET

// func clearVectorsAsm(avx bool)
//
// Zeroes X0-X15, and with AVX the whole of Y0-Y15. X15 is the ABIInternal
// zero register: it ends zero either way.
TEXT ·clearVectorsAsm(SB), NOSPLIT, $0-1
	CMPB avx+0(FP), $0
	JEQ  sse
	VZEROALL
	RET
sse:
	PXOR X0, X0
	PXOR X1, X1
	PXOR X2, X2
	PXOR X3, X3
	PXOR X4, X4
	PXOR X5, X5
	PXOR X6, X6
	PXOR X7, X7
	PXOR X8, X8
	PXOR X9, X9
	PXOR X10, X10
	PXOR X11, X11
	PXOR X12, X12
	PXOR X13, X13
	PXOR X14, X14
	PXOR X15, X15
	RET
