//go:build !purego

package seal

const pureGo = false
