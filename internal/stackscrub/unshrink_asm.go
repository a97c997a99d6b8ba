//go:build amd64 || arm64 || arm

package stackscrub

import "unsafe"

// Anchored reports whether Unshrinkable anchors its function: here it
// does, unless the runtime's g stops starting with the stack's bounds
// (see Unshrinkable).
const Anchored = true

// Unshrinkable runs f where no collection shrinks the goroutine's stack
// while f runs, and where f's calls need not grow it: on the calling
// goroutine, below frames that fill a quarter of its stack, with room
// reserved below for f's frames, its Guard's reservation (ReserveDeep's
// if deep, Reserve's if not) and the unwinding of a panic through them.
// Code that goes deeper than that grows the stack, which copies it and
// frees the old one, and makes the quarter larger.
//
// Should a Go release no longer start its g with the stack's bounds, the
// check below finds that they do not hold the caller's frame and f runs
// unanchored; TestStackBounds fails on such a release.
func Unshrinkable(deep bool, f func()) {
	lo, hi := Bounds()
	var here byte
	at := uintptr(unsafe.Pointer(&here))
	if size := hi - lo; at <= lo || at > hi || size < 2048 || size&(size-1) != 0 {
		f()
		return
	}
	anchor(deep, f)
}

// OnStack reports whether p is in the calling goroutine's stack, as its
// bounds in the runtime's g say, when they look like a stack's (a power
// of two of at least 2 KiB); false when they do not. It runs no stack
// check, nor does anything it calls.
//
//go:nosplit
func OnStack(p unsafe.Pointer) bool {
	lo, hi := stackBounds()
	size := hi - lo
	return lo < hi && size >= 2048 && size&(size-1) == 0 && uintptr(p) >= lo && uintptr(p) < hi
}

// Bounds returns the bounds of the calling goroutine's stack, [lo, hi),
// as the runtime keeps them: tests compare them around a call to see
// that the stack did not move.
func Bounds() (lo, hi uintptr) { return stackBounds() }

// anchor reserves room below it for f, then, until the frames above it
// fill a quarter of the stack, descends by a frame of hop512K, hop64K,
// hop8K or hop2K, the largest the gap to the quarter holds, which call it
// again; then it calls f. A reservation that grows the stack makes its
// quarter larger, which the next check sees. The frames it descends by are
// assembly's, which leave them as they are: Go frames as large would be
// zeroed, costing a goroutine with a large stack tens of microseconds on
// every call.
//
//go:noinline
func anchor(deep bool, f func()) {
	if deep {
		reserveAnchorDeep()
	} else {
		reserveAnchor()
	}
	lo, hi := stackBounds()
	var here byte
	used, quarter := hi-uintptr(unsafe.Pointer(&here)), (hi-lo)/4
	switch {
	case used >= quarter:
		f()
	case quarter-used > 512<<10:
		hop512K(deep, f)
	case quarter-used > 64<<10:
		hop64K(deep, f)
	case quarter-used > 8<<10:
		hop8K(deep, f)
	default:
		hop2K(deep, f)
	}
}
