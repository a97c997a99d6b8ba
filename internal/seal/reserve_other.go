//go:build !amd64 && !arm64

package seal

// reserveStack grows the stack, if it must, to hold scrubStack's frame
// (see the assembly version): here by calling it, zeroing once more.
func reserveStack() { scrubStack() }
