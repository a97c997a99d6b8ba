//go:build !race

#include "go_asm.h"
#include "textflag.h"

// func release(m *Mutex) bool
TEXT ·release(SB), NOSPLIT|NOFRAME, $0-9
	MOVQ m+0(FP), AX
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
	SETGT ret+8(FP)
	RET
