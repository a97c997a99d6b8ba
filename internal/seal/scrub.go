package seal

// stackScrub is how much of the goroutine's stack scrubStack zeroes below
// its caller: more than x/crypto's ChaCha20-Poly1305 assembly (a 288-byte
// frame, aligned to 32 bytes) and the Go frames between it and the caller.
const stackScrub = 2048

// scrubStack zeroes stackScrub bytes of the stack just below its caller's
// frame, where the frames of the calls the caller has just returned from
// were. x/crypto's ChaCha20-Poly1305 assembly keeps the key and its block
// state in its own frame for inputs over 320 bytes and returns without
// clearing it; the next calls deep enough overwrite it, but until then a
// scan of the goroutine's stack finds the key.
//
//go:noinline
func scrubStack() {
	var b [stackScrub]byte // zeroed on entry: that is the scrub
	keep(&b)
}

// keep makes b's zeroing a store the compiler must do.
//
//go:noinline
func keep(b *[stackScrub]byte) {}
