//go:build amd64 || arm64

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

// reserveAnchor is Reserve for a frame larger than Reserve's by room for
// the Go frames between: Unshrinkable's, before the function it runs
// reserves its own.
func reserveAnchor()

// reserveAnchorDeep is reserveAnchor for ReserveDeep.
func reserveAnchorDeep()
