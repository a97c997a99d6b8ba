//go:build goexperiment.runtimesecret && linux && (amd64 || arm64)

package secretmode

import "runtime/secret"

// On reports whether Do runs its function inside secret.Do.
const On = true

// Do runs f inside secret.Do. A panic in f comes out of Do unchanged.
func Do(f func()) { secret.Do(f) }

// Active reports whether the caller runs inside secret.Do.
func Active() bool { return secret.Enabled() }
