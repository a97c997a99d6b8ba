//go:build solaris || aix

package osmem

import "golang.org/x/sys/unix"

// getMemlockLimit fails: these systems have no RLIMIT_MEMLOCK (locking
// memory is a privilege there, not a quota), so LockLimit reports -1.
func getMemlockLimit(*unix.Rlimit) error { return unix.EINVAL }
