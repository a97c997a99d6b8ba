#include "textflag.h"

// func reserveStack()
// Not NOSPLIT, and with a frame over the assembler's small-frame limit:
// the prologue checks the stack and grows it if the frame does not fit.
TEXT ·reserveStack(SB), 0, $2560-0
	RET
