//go:build linux

package osmem

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// LockOnFault locks r into RAM as Relock does, but backs none of its
// pages: each is locked as it is first touched (mlock2 with
// MLOCK_ONFAULT). The whole region counts against RLIMIT_MEMLOCK, and in
// the process's locked memory, from the call on, so it fails, or
// succeeds, for the whole region at once. It returns ErrNoOnFault where
// the system has no such lock or refuses the call. Called on a region none
// of whose pages is backed yet, it returns at once, where Relock would
// fault in and zero every page in one system call.
func LockOnFault(r *Region) error {
	if r == nil || r.Locked || len(r.Data) == 0 {
		return nil
	}
	if err := injectedLock(len(r.Data)); err != nil {
		return fmt.Errorf("osmem: mlock2: %w", err)
	}
	_, _, errno := unix.Syscall(unix.SYS_MLOCK2, uintptr(unsafe.Pointer(unsafe.SliceData(r.Data))), uintptr(len(r.Data)), unix.MLOCK_ONFAULT)
	switch errno {
	case 0:
	case unix.ENOSYS, unix.EINVAL, unix.EPERM:
		// Before Linux 4.4 there is no mlock2, and an old mlock2 knows
		// no MLOCK_ONFAULT. A system call filter written before then
		// refuses mlock2 with EPERM and may allow mlock; where the
		// kernel itself says EPERM (no CAP_IPC_LOCK and a limit of 0),
		// Relock meets the same refusal and reports it.
		return ErrNoOnFault
	default:
		return fmt.Errorf("osmem: mlock2: %w", errno)
	}
	r.Locked, r.LockedLen, r.LockErr = true, len(r.Data), nil
	return nil
}
