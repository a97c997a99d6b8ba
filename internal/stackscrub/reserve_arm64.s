#include "textflag.h"

// Not NOSPLIT, and with frames over the assembler's small-frame limit: the
// prologue checks the stack and grows it if the frame does not fit. Each
// frame is larger than its scrub's, by room for the Go frames between.

// func Reserve()
TEXT ·Reserve(SB), 0, $2560-0
	RET

// func ReserveDeep()
TEXT ·ReserveDeep(SB), 0, $16896-0
	RET
