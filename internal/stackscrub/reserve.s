//go:build amd64 || arm64 || arm

#include "textflag.h"

// Not NOSPLIT, and with frames over the assembler's small-frame limit: the
// prologue checks the stack and grows it if the frame does not fit. Each
// frame is larger than its scrub's, by room for the Go frames between.
// The bodies are the same on every architecture that has them; what
// differs is in reserve_$GOARCH.s.

// func Reserve()
TEXT ·Reserve(SB), 0, $3584-0
	RET

// func ReserveDeep()
TEXT ·ReserveDeep(SB), 0, $16896-0
	RET

// func reserveAnchor()
TEXT ·reserveAnchor(SB), 0, $8192-0
	RET

// func reserveAnchorDeep()
TEXT ·reserveAnchorDeep(SB), 0, $28672-0
	RET
