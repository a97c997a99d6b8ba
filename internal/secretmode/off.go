//go:build !(goexperiment.runtimesecret && linux && (amd64 || arm64))

package secretmode

// On reports whether Do runs its function inside secret.Do.
const On = false

// Do calls f: there is no secret.Do in this build.
func Do(f func()) { f() }

// Active reports whether the caller runs inside secret.Do: never, in this
// build.
func Active() bool { return false }
