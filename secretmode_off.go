//go:build !(goexperiment.runtimesecret && linux && (amd64 || arm64))

package memshuffle

const secretMode = false

// runSecret calls f: without runtime/secret there is nothing to erase with.
func runSecret(f func()) { f() }
