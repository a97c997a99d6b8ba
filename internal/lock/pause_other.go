//go:build !amd64

package lock

func pause() {}
