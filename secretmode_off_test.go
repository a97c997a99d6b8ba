//go:build !goexperiment.runtimesecret

package memshuffle

const experimentOn = false

// secretEnabled is secret.Enabled where the package exists; without the
// experiment nothing can run inside secret.Do.
func secretEnabled() bool { return false }
