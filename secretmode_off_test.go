//go:build !goexperiment.runtimesecret

package memshuffle

const experimentOn = false
