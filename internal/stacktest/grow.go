package stacktest

// AtDepth calls f depth frames of about 100 bytes below its caller, so
// that f starts at a different distance from the end of its goroutine's
// stack for each depth: at some depths the stack must grow during f.
//
//go:noinline
func AtDepth(depth int, f func()) {
	var pad [96]byte
	if depth == 0 {
		f()
		return
	}
	AtDepth(depth-1, f)
	keep(&pad)
}

// keep makes pad a part of its caller's frame.
//
//go:noinline
func keep(pad *[96]byte) {}

// Grow deepens the calling goroutine's stack by about kib KiB of frames
// and returns, leaving the stack that large: a goroutine of a server that
// has done deep work before, whose stack a collection may shrink.
//
//go:noinline
func Grow(kib int) {
	var pad [1024]byte
	if kib > 0 {
		Grow(kib - 1)
	}
	keep1K(&pad)
}

// keep1K makes pad a part of its caller's frame.
//
//go:noinline
func keep1K(*[1024]byte) {}
