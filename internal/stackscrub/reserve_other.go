//go:build !amd64 && !arm64 && !arm

package stackscrub

// Reserve grows the stack, if it must, to hold Scrub's frame (see the
// assembly version): here by calling it, zeroing once more.
func Reserve() { Scrub() }

// ReserveDeep is Reserve for ScrubDeep.
func ReserveDeep() { ScrubDeep() }
