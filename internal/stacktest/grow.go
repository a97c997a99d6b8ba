package stacktest

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
