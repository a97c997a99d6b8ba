//go:build goexperiment.runtimesecret && linux && (amd64 || arm64)

package memshuffle

import "runtime/secret"

const secretMode = true

// runSecret runs f inside secret.Do, so that the registers and stack f used
// are erased when it returns and its heap allocations once unreachable. A
// panic in f comes out of runSecret unchanged.
func runSecret(f func()) { secret.Do(f) }
