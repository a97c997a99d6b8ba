//go:build unix && !solaris && !aix && !linux

package osmem

import "golang.org/x/sys/unix"

// getMemlockLimit reads RLIMIT_MEMLOCK.
func getMemlockLimit(lim *unix.Rlimit) error {
	return unix.Getrlimit(unix.RLIMIT_MEMLOCK, lim)
}
