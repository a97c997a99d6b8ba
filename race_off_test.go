//go:build !race

package memshuffle

const raceBuild = false
