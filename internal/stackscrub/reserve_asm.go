//go:build amd64 || arm64

package stackscrub

// Reserve has a frame larger than Scrub's and does nothing in it: its
// prologue grows the goroutine's stack, as any call would, when that frame
// does not fit. Unlike a Go function with a frame this large, it writes
// nothing there.
func Reserve()

// ReserveDeep is Reserve for ScrubDeep.
func ReserveDeep()
