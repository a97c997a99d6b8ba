//go:build !amd64 && !arm64

package stackscrub

import "unsafe"

// Unshrinkable runs f. Here no assembly reads the stack's bounds, so f
// runs unanchored: a collection may shrink the stack while it runs.
// Running f on a goroutine of its own instead would make f escape, and
// every caller allocate on every call, pinned or not.
func Unshrinkable(deep bool, f func()) { f() }

// OnStack reports false: here no assembly reads the stack's bounds.
//
//go:nosplit
func OnStack(p unsafe.Pointer) bool { return false }
