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
	SETGT ret+8(FP) // wakeOne or released
	RET

handoff:
	MOVB $const_handOff, ret+8(FP)
	RET
