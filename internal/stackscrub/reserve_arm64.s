#include "textflag.h"
#include "funcdata.h"

// func stackBounds() (lo, hi uintptr)
//
// The runtime's g for the goroutine begins with its stack's bounds, an
// offset runtime/cgo's C code also relies on; the Go caller checks that
// they hold its own frame before it uses them.
TEXT ·stackBounds(SB), NOSPLIT, $0-16
	MOVD 0(g), R0
	MOVD R0, lo+0(FP)
	MOVD 8(g), R0
	MOVD R0, hi+8(FP)
	RET

// HOP defines a function of signature func(deep bool, f func()) that calls
// anchor(deep, f) from a frame of FRAME bytes. The frame holds anchor's
// arguments at its bottom and nothing else: no pointers but those, which
// anchor's own argument map describes.
#define HOP(NAME, FRAME) \
TEXT NAME(SB), 0, $FRAME-16; \
	NO_LOCAL_POINTERS; \
	MOVBU	deep+0(FP), R0; \
	MOVB	R0, 8(RSP); \
	MOVD	f+8(FP), R0; \
	MOVD	R0, 16(RSP); \
	CALL	·anchor(SB); \
	RET

HOP(·hop2K, 2064)
HOP(·hop8K, 8208)
HOP(·hop64K, 65552)
HOP(·hop512K, 524304)
