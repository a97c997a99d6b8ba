//go:build !(goexperiment.runtimesecret && linux && (amd64 || arm64))

package memshuffle

import "github.com/memshuffle/memshuffle/internal/aesctr"

const secretMode = false

// runSecret calls f. Without runtime/secret there is nothing to erase its
// stack and heap with; what it can do, it does: clear the vector
// registers, where crypto assembly (SHA-256 for MAC, AES for NewAEAD) and
// memmove leave key material and plaintext for the next asynchronous
// preemption or signal to save (aesctr.ClearVectors).
func runSecret(f func()) {
	defer aesctr.ClearVectors()
	f()
}
