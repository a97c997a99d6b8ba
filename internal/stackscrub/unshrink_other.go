//go:build !amd64 && !arm64 && !arm

package stackscrub

import "unsafe"

// Anchored reports whether Unshrinkable anchors its function: not here,
// where no assembly reads the stack's bounds.
const Anchored = false

// Unshrinkable runs f. Here no assembly reads the stack's bounds, so f
// runs unanchored: a collection may shrink the stack while it runs.
// Running f on a goroutine of its own instead would make f escape, and
// every caller allocate on every call, pinned or not.
func Unshrinkable(deep bool, f func()) { f() }

// OnStack reports false: here no assembly reads the stack's bounds.
//
//go:nosplit
func OnStack(p unsafe.Pointer) bool { return false }
