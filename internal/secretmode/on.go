//go:build goexperiment.runtimesecret && linux && (amd64 || arm64)

package secretmode

import "runtime/secret"

// On reports whether Do runs its function inside secret.Do.
const On = true

// Do runs f inside secret.Do. A panic in f comes out of Do with its value
// unchanged, raised again by secret.Do once it has erased f's stack, so
// the stack trace starts there. If f calls runtime.Goexit, the erasure
// waits until the goroutine's deferred calls have run.
func Do(f func()) { secret.Do(f) }

// Active reports whether the caller runs inside secret.Do.
func Active() bool { return secret.Enabled() }
