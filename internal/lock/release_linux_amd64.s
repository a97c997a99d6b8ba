//go:build !race

#include "go_asm.h"
#include "textflag.h"

// func release(m *Mutex) uint8
TEXT ·release(SB), NOSPLIT|NOFRAME, $0-9
	MOVQ m+0(FP), AX
	// A starving sleeper is handed the lock: keep it held. A load is not
	// moved past the store that follows it, so a holder that saw none
	// lets go, and the sleeper, counted in waiting, gets a token.
	CMPL Mutex_starving(AX), $0
	JGT  handoff
	CMPB ·asymmetric(SB), $0
	JEQ  seqcst
	MOVL $0, Mutex_state(AX)
	JMP  check

seqcst:
	XORL BX, BX
	XCHGL BX, Mutex_state(AX)

check:
	MOVL  Mutex_waiting(AX), BX
	CMPL  BX, $0
	JLE   none
	// A sleeper to wake: Unlock's signal next reads whether the wake
	// channel is full with a plain load (chansend's lock-free check), and
	// a sleeper that has just taken the token there tries the lock. With
	// the store above still in this CPU's store buffer, that CAS can fail
	// while this load still sees the token, and the sleeper parks with no
	// token on a free lock (store buffering; the sleeper's barrier ran
	// before its first sleep, not this one). The fence makes the store
	// visible first, and costs only when someone sleeps. A locked OR of
	// zero into a word of the stack is a full barrier for ordinary memory,
	// as MFENCE is, at a fraction of its cost; Linux's smp_mb on x86-64
	// is the same, below the stack pointer, so that the RET after it does
	// not wait on a locked write to the return address. A NOSPLIT leaf
	// always has that room below SP, and OR with zero changes nothing.
	// BenchmarkReleaseWake, the store of the lock included: 4.7-5.0 ns,
	// against 9.5-10.1 at 0(SP) and 20.4-26.7 with MFENCE.
	LOCK
	ORL   $0, -8(SP)
	MOVB  $const_wakeOne, ret+8(FP)
	RET

none:
	MOVB $const_released, ret+8(FP)
	RET

handoff:
	MOVB $const_handOff, ret+8(FP)
	RET
