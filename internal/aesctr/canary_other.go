//go:build !linux || !amd64

package aesctr

// setupCanary is false: guardCanary relies on the layout of Linux's x86-64
// signal frames.
func setupCanary() bool { return false }
