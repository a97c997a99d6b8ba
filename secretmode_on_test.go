//go:build goexperiment.runtimesecret

package memshuffle

import "runtime/secret"

const experimentOn = true

func secretEnabled() bool { return secret.Enabled() }
