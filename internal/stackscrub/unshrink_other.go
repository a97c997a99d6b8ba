//go:build !amd64 && !arm64

package stackscrub

// Unshrinkable runs f where no collection shrinks the goroutine's stack
// while f runs: here, with no assembly to read the stack's bounds, on a
// goroutine of its own (OnFreshStack), which makes f escape.
func Unshrinkable(deep bool, f func()) { OnFreshStack(f) }
