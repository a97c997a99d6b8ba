//go:build amd64 || arm64

package stackscrub

import (
	"testing"
	"unsafe"
)

// TestStackBounds: where there is assembly to read them, the bounds
// Unshrinkable reads hold the caller's frame, so that it anchors on the
// caller's goroutine rather than starting one.
func TestStackBounds(t *testing.T) {
	lo, hi := stackBounds()
	var here byte
	if at := uintptr(unsafe.Pointer(&here)); at <= lo || at > hi || (hi-lo)&(hi-lo-1) != 0 {
		t.Errorf("stack bounds [%#x, %#x) do not hold a local at %#x", lo, hi, at)
	}
}
