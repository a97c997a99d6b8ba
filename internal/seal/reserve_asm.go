//go:build amd64 || arm64

package seal

// reserveStack has a frame larger than scrubStack's and does nothing in
// it: its prologue grows the goroutine's stack, as any call would, when
// that frame does not fit. Called just before the AEAD at the depth
// scrubStack is called after it, it makes the stack grow, if it must,
// before the assembly writes the key into its frame, not in scrubStack's
// prologue after, which would copy the stack and free the old one with
// that frame still in it. Unlike a Go function with a frame this large,
// it writes nothing there.
func reserveStack()
