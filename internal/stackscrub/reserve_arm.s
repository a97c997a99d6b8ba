//go:build arm

#include "textflag.h"
#include "funcdata.h"

// func stackBounds() (lo, hi uintptr)
//
// The runtime's g for the goroutine begins with its stack's bounds, an
// offset runtime/cgo's C code also relies on; the Go caller checks that
// they hold its own frame before it uses them.
TEXT ·stackBounds(SB), NOSPLIT, $0-8
	MOVW	0(g), R0
	MOVW	R0, lo+0(FP)
	MOVW	4(g), R0
	MOVW	R0, hi+4(FP)
	RET

// HOP defines a function of signature func(deep bool, f func()) that calls
// anchor(deep, f) from a frame of FRAME bytes. The frame holds anchor's
// arguments at its bottom, above the saved link register, and nothing
// else: no pointers but those, which anchor's own argument map describes.
#define HOP(NAME, FRAME) \
TEXT NAME(SB), 0, $FRAME-8; \
	NO_LOCAL_POINTERS; \
	MOVBU	deep+0(FP), R0; \
	MOVB	R0, 4(R13); \
	MOVW	f+4(FP), R0; \
	MOVW	R0, 8(R13); \
	BL	·anchor(SB); \
	RET

HOP(·hop2K, 2056)
HOP(·hop8K, 8200)
HOP(·hop64K, 65544)
HOP(·hop512K, 524296)
