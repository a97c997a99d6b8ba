//go:build linux

package osmem

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Headroom is how much of a process's address-space and data limits
// (RLIMIT_AS, RLIMIT_DATA: `ulimit -v`, `ulimit -d`, LimitAS= and
// LimitDATA= in a systemd unit) Map leaves to everything else, where
// either is set. The Go runtime maps memory to grow its heap (64 MiB of
// address space at a time on 64-bit Linux), for its garbage collector's
// work queues and for every new thread (in a program that links cgo, as
// one importing net does where cgo is enabled, a stack of RLIMIT_STACK,
// 8 MiB by default), and it cannot fail
// gracefully: a refused mapping ends the process, with "fatal error:
// runtime: out of memory", a failed pthread_create or, in the Go 1.26
// collector, a nil dereference. Arenas that took a limit to its last
// byte left the process to die at its next heap growth or thread, where a
// Map refused now is an error the caller can handle.
const Headroom = 64 << 20

// checkHeadroom refuses a mapping of n bytes that would leave less than
// Headroom of RLIMIT_AS or RLIMIT_DATA, where either is set. The kernel
// keeps no count a process can read cheaply of what it holds against
// them, so a probe asks for n bytes and the headroom at once, private and
// writable (which both limits count) but never touched, and gives them
// back. Without either limit it costs two getrlimit calls.
func checkHeadroom(n int) error {
	var as, data unix.Rlimit
	asSet := unix.Getrlimit(unix.RLIMIT_AS, &as) == nil && as.Cur != unix.RLIM_INFINITY
	dataSet := unix.Getrlimit(unix.RLIMIT_DATA, &data) == nil && data.Cur != unix.RLIM_INFINITY
	if !asSet && !dataSet {
		return nil
	}
	size := uintptr(n) + Headroom
	p, err := unix.MmapPtr(-1, 0, nil, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON|unix.MAP_NORESERVE)
	if err != nil {
		return fmt.Errorf("osmem: mmap of %d bytes: %w (RLIMIT_AS %s, RLIMIT_DATA %s): %w",
			n, ErrHeadroom, limitText(as, asSet), limitText(data, dataSet), err)
	}
	_ = unix.MunmapPtr(p, size)
	return nil
}

func limitText(l unix.Rlimit, set bool) string {
	if !set {
		return "unlimited"
	}
	return fmt.Sprintf("%d bytes", l.Cur)
}
