package memshuffle

import (
	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/secretmode"
)

// SecretMode reports whether the program was built with
// GOEXPERIMENT=runtimesecret on a platform where runtime/secret erases
// what a function leaves behind (linux/amd64 and linux/arm64, as of Go
// 1.26). In secret mode every callback the library runs with plaintext
// (Borrow and its siblings, the fill of ReadFrom and CopyFrom, the reader
// of ReadAll and ReadUntil, the writer of WriteTo, the crypto adapters
// NewSigner, MAC, NewAEAD and ReadPrivateKey) runs inside
// secret.Do: the registers and stack it used are erased when it returns,
// and the heap memory it allocated is erased once the garbage collector
// finds it unreachable. Without it those callbacks run as plain calls, and whatever
// they leave on the stack or the heap stays readable until reused.
//
// Secret mode does not reach global variables a callback writes, goroutines
// it starts, or values that outlive it (anything stored where the program
// can still reach it); see the package documentation.
func SecretMode() bool { return secretMode }

const secretMode = secretmode.On

// runSecret runs f inside secret.Do in secret mode, so that the registers
// and stack f used are erased when it returns and its heap allocations once
// unreachable; a panic in f comes out of runSecret unchanged. Without it
// there is nothing to erase f's stack and heap with, and runSecret does
// what it can: it clears the vector registers, where crypto assembly
// (SHA-256 for MAC, AES for NewAEAD) and memmove leave key material and
// plaintext for the next asynchronous preemption or signal to save
// (aesctr.ClearVectors).
func runSecret(f func()) {
	if secretmode.On {
		secretmode.Do(f)
		return
	}
	defer aesctr.ClearVectors()
	f()
}
