// The signal guards of the assembly routines, shared by aesctr_amd64.s and
// canary_linux_amd64.s; aesctr_amd64.s's header comment describes them.

#define guardBlock 1
#define guardDetect 2
#define guardCanary 3

#define SYS_rt_sigprocmask 14
#define SYS_getpid 39
#define SYS_sigaltstack 131
#define SYS_gettid 186
#define SYS_tgkill 234
#define SIG_BLOCK 0
#define SIG_SETMASK 2
#define SS_ONSTACK 1
#define SS_DISABLE 2

// fxMagic1 is where, in the FXSAVE area of a signal frame, the kernel
// writes FP_XSTATE_MAGIC1 (struct _fpx_sw_bytes in the reserved bytes 464-
// 511, which the XSAVE instruction leaves alone): a word every frame
// delivered on the signal stack writes, never with zero.
#define fxMagic1 464

// The frame of a guarded routine. The guard in effect (the argument, or
// what guardCanary fell back to) is kept so that GUARDEXIT undoes what
// GUARDENTER did.
#define frameMask 0      // saved signal mask (guardBlock)
#define frameTSC 8       // starting time stamp (guardDetect)
#define frameCanary 8    // canary for the default frame size (guardCanary)
#define frameCanaryMax 16 // canary for the largest frame size (guardCanary)
#define frameStack 24    // stack_t for sigaltstack: ss_sp,
#define frameStackFlags 32 // ss_flags,
#define frameStackSize 40 // ss_size
#define frameGuard 48    // guard in effect

#ifdef GOOS_linux
// CANARYENTER plants the canaries of guardCanary, with AX = guardCanary,
// or jumps to fallback. On an M that has made cgo calls it plants them
// only where Go code has had the kernel confirm the signal stack since the
// M's last cgo call (checkedStacks, with no cgo call under way). Otherwise
// it falls back, and where the fallback blocks signals (ticks 0: calls over
// detectMax bytes, which all come through pickGuard) it first notes the M
// (cgoMiss, its id plus one) for pickGuard to confirm its stack on its next
// call from that M.
#define CANARYENTER(ticks, nocgo, cgo, cgomiss, fallback, out) \
	MOVQ    TLS, CX                         \
	MOVQ    0(CX)(TLS*1), CX                \
	MOVQ    const_offGM(CX), CX             \
	CMPB    const_offMIsextra(CX), $0       \
	JNE     fallback                        \
	CMPB    const_offMNewSigstack(CX), $0   \
	JEQ     fallback                        \
	MOVQ    const_offMNcgocall(CX), DX      \
	TESTQ   DX, DX                          \
	JZ      nocgo                           \
	CMPQ    DX, $1                          \
	JNE     cgo                             \
	CMPQ    const_offMID(CX), $0            \
	JNE     cgo                             \
	JMP     nocgo                           \
cgo:                                            \
	CMPL    const_offMNcgo(CX), $0          \
	JNE     fallback                        \
	MOVQ    const_offMID(CX), SI            \
	MOVQ    SI, DI                          \
	ANDQ    $(const_checkedSlots-1), DI           \
	LEAQ    ·checkedStacks(SB), R10         \
	MOVQ    (R10)(DI*8), R10                \
	TESTQ   R10, R10                        \
	JZ      cgomiss                         \
	CMPQ    checkedStack_id(R10), SI        \
	JNE     cgomiss                         \
	CMPQ    checkedStack_ncgocall(R10), DX  \
	JNE     cgomiss                         \
	MOVQ    const_offMGsignal(CX), R11      \
	MOVQ    const_offGStackLo(R11), SI      \
	CMPQ    checkedStack_lo(R10), SI        \
	JNE     cgomiss                         \
	MOVQ    const_offGStackHi(R11), SI      \
	CMPQ    checkedStack_hi(R10), SI        \
	JEQ     nocgo                           \
cgomiss:                                        \
	MOVQ    ticks, DI                       \
	TESTQ   DI, DI                          \
	JNZ     fallback                        \
	MOVQ    const_offMID(CX), SI            \
	INCQ    SI                              \
	MOVQ    SI, ·cgoMiss(SB)                \
	JMP     fallback                        \
nocgo:                                          \
	MOVQ    const_offMGsignal(CX), CX       \
	MOVQ    const_offGStackHi(CX), DX       \
	SUBQ    ·canaryFrameMax(SB), DX         \
	ANDQ    $~63, DX                        \
	CMPQ    DX, const_offGStackLo(CX)       \
	JB      fallback                        \
	MOVQ    const_offGStackHi(CX), CX       \
	SUBQ    ·canaryFrame(SB), CX            \
	ANDQ    $~63, CX                        \
	MOVL    $0, fxMagic1(CX)                \
	MOVQ    CX, frameCanary(SP)             \
	MOVL    $0, fxMagic1(DX)                \
	MOVQ    DX, frameCanaryMax(SP)          \
	MOVB    AX, frameGuard(SP)              \
	JMP     out

// CANARYEXIT goes on to the wipe that follows it if either canary was
// overwritten, counting the detection, and jumps to out otherwise.
#define CANARYEXIT(out)                       \
	MOVQ    frameCanary(SP), AX             \
	MOVL    fxMagic1(AX), AX                \
	MOVQ    frameCanaryMax(SP), CX          \
	ORL     fxMagic1(CX), AX                \
	JZ      out                             \
	LOCK;   INCQ ·canaryHits(SB)
#else
// The canaries rely on Linux's signal frames, and guardFor never picks
// guardCanary elsewhere; were it passed, it would fall back.
#define CANARYENTER(ticks, nocgo, cgo, cgomiss, fallback, out) JMP fallback
#define CANARYEXIT(out) JMP out
#endif

// GUARDENTER starts the guard. It clobbers AX, CX, DX, SI, DI, R10 and R11,
// so it comes before the arguments are loaded. guardCanary falls back to
// guardDetect with threshold ticks (to guardBlock when ticks is 0) on a
// thread that has run a cgo call, where C code may have moved the signal
// stack away from the one the runtime recorded: m.ncgocall is not 0, except
// for the one call the runtime itself makes on m0 (m.id 0) in a cgo
// binary, _cgo_notify_runtime_init_done, which does not touch it, unless
// the kernel has confirmed the stack since (CANARYENTER). It falls
// back on the M of a thread that C created and that calls into Go
// (m.isextra): ncgocall does not count those calls, and in a cgo binary
// the M stays bound to the thread, so m.gsignal.stack keeps the signal
// stack of the thread's first call even after C moves or frees it, and the
// canaries would land there while the real frame goes unseen. It falls
// back too where the runtime adopted a signal stack that C had set
// (m.newSigstack false), which belongs to C and may change. It falls
// back too where the signal stack is too small for the larger frame (a
// thread created by C code, with a signal stack of its own), so that it
// never writes below the stack. A guardBlock whose rt_sigprocmask the
// system refuses (a system call filter) saved no mask to restore, and
// blocked nothing: it falls back to guardDetect with the same threshold,
// which with a threshold of 0 wipes the signal stack at the end of every
// call.
#define GUARDENTER(guard, ticks, nocgo, cgo, cgomiss, nocanary, fallback, detect, block, out) \
	MOVBLZX guard, AX                       \
	CMPQ    AX, $guardCanary                \
	JNE     nocanary                        \
	CANARYENTER(ticks, nocgo, cgo, cgomiss, fallback, out) \
fallback:                                       \
	MOVQ    ticks, AX                       \
	TESTQ   AX, AX                          \
	JZ      block                           \
	JMP     detect                          \
nocanary:                                       \
	CMPQ    AX, $guardBlock                 \
	JEQ     block                           \
	MOVB    $0, frameGuard(SP)              \
	CMPQ    AX, $guardDetect                \
	JNE     out                             \
detect:                                         \
	MOVB    $guardDetect, frameGuard(SP)    \
	RDTSC                                   \
	SHLQ    $32, DX                         \
	ORQ     DX, AX                          \
	MOVQ    AX, frameTSC(SP)                \
	JMP     out                             \
block:                                          \
	MOVB    $guardBlock, frameGuard(SP)     \
	MOVQ    $SYS_rt_sigprocmask, AX         \
	MOVQ    $SIG_BLOCK, DI                  \
	LEAQ    asyncSignals<>(SB), SI          \
	LEAQ    frameMask(SP), DX               \
	MOVQ    $8, R10                         \
	SYSCALL                                 \
	TESTQ   AX, AX                          \
	JNZ     detect                          \
out:

// GUARDEXIT ends the guard, after every register holding a secret is
// cleared. It clobbers AX, CX, DX, SI, DI, R10 and R11. A canary that is
// no longer zero, or a late return under guardDetect, means a signal frame
// may hold secrets: then the routine asks the kernel for the thread's
// signal stack and zeroes all of it.
#define GUARDEXIT(ticks, notdetect, wipe, restore, out) \
	MOVBLZX frameGuard(SP), AX              \
	CMPQ    AX, $guardBlock                 \
	JEQ     restore                         \
	CMPQ    AX, $guardDetect                \
	JNE     notdetect                       \
	RDTSC                                   \
	SHLQ    $32, DX                         \
	ORQ     DX, AX                          \
	SUBQ    frameTSC(SP), AX                \
	CMPQ    AX, ticks                       \
	JBE     out                             \
	JMP     wipe                            \
notdetect:                                      \
	CMPQ    AX, $guardCanary                \
	JNE     out                             \
	CANARYEXIT(out)                         \
wipe:                                           \
	MOVQ    $SYS_sigaltstack, AX            \
	XORL    DI, DI                          \
	LEAQ    frameStack(SP), SI              \
	SYSCALL                                 \
	TESTQ   AX, AX                          \
	JNZ     out                             \
	MOVL    frameStackFlags(SP), AX          \
	TESTL   $(SS_ONSTACK|SS_DISABLE), AX    \
	JNZ     out                             \
	MOVQ    frameStack(SP), DI              \
	MOVQ    frameStackSize(SP), CX         \
	XORL    AX, AX                          \
	REP;    STOSB                           \
	JMP     out                             \
restore:                                        \
	MOVQ    $SYS_rt_sigprocmask, AX         \
	MOVQ    $SIG_SETMASK, DI                \
	LEAQ    frameMask(SP), SI               \
	XORL    DX, DX                          \
	MOVQ    $8, R10                         \
	SYSCALL                                 \
out:

// asyncSignals is every signal but SIGILL (4), SIGTRAP (5), SIGBUS (7),
// SIGFPE (8) and SIGSEGV (11), as a kernel sigset_t: bit n-1 is signal n.
// The kernel ignores the bits of SIGKILL and SIGSTOP.
DATA asyncSignals<>+0(SB)/8, $0xfffffffffffffb27
GLOBL asyncSignals<>(SB), RODATA|NOPTR, $8
