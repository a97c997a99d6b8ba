//go:build amd64 || arm64

package stackscrub

import "unsafe"

// Unshrinkable runs f where no collection shrinks the goroutine's stack
// while f runs, and f's calls (a Guard's reservation included) need not
// grow it: on the calling goroutine, below frames that fill a quarter of
// its stack. f must reach no deeper than Reserve's reservation, or
// ReserveDeep's if deep, and a few hundred bytes of frames.
//
// Should a Go release no longer start its g with the stack's bounds, the
// check below finds that they do not hold the caller's frame and f runs
// unanchored, as before this existed; TestStackBounds fails on such a
// release. Starting a goroutine instead (OnFreshStack) would make f
// escape, and every caller allocate, on every call.
func Unshrinkable(deep bool, f func()) {
	var here byte
	lo, hi := stackBounds()
	at := uintptr(unsafe.Pointer(&here))
	if size := hi - lo; at <= lo || at > hi || size < 2048 || size&(size-1) != 0 {
		f()
		return
	}
	anchor(deep, f)
}

// step is how much stack each frame of anchor fills.
const step = 2 << 10

// anchor reserves room below it for f (a Guard's reservation, deep or
// not, and the frames between), then calls itself, each frame step bytes,
// until the frames above f fill a quarter of the stack, and calls f. A
// reservation that grows the stack makes its quarter larger, which the
// next frame's check sees.
//
//go:noinline
func anchor(deep bool, f func()) {
	var pad [step]byte // zeroed: the frame is really this large
	keepStep(&pad)
	if deep {
		reserveAnchorDeep()
	} else {
		reserveAnchor()
	}
	lo, hi := stackBounds()
	if hi-uintptr(unsafe.Pointer(&pad[0])) < (hi-lo)/4 {
		anchor(deep, f)
		return
	}
	f()
}

//go:noinline
func keepStep(*[step]byte) {}
