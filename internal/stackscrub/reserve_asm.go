//go:build amd64 || arm64 || arm

package stackscrub

// Reserve has a frame larger than Scrub's and does nothing in it: its
// prologue grows the goroutine's stack, as any call would, when that frame
// does not fit. Unlike a Go function with a frame this large, it writes
// nothing there.
func Reserve()

// ReserveDeep is Reserve for ScrubDeep.
func ReserveDeep()

// stackBounds returns the bounds of the calling goroutine's stack, [lo,
// hi), as the runtime keeps them.
func stackBounds() (lo, hi uintptr)

// reserveAnchor is Reserve for Unshrinkable, before the function it runs
// reserves its own: room for that reservation, the Go frames between and
// a panic's unwinding through them, whose deferred Scrub runs below the
// panicking frames.
func reserveAnchor()

// reserveAnchorDeep is reserveAnchor for ReserveDeep.
func reserveAnchorDeep()

// hop2K, hop8K, hop64K and hop512K call anchor(deep, f) from a frame of
// 2, 8, 64 or 512 KiB that they write nothing to.
//
//go:noescape
func hop2K(deep bool, f func())

//go:noescape
func hop8K(deep bool, f func())

//go:noescape
func hop64K(deep bool, f func())

//go:noescape
func hop512K(deep bool, f func())
