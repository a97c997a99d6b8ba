//go:build !purego

package memshuffle

const pureGo = false
