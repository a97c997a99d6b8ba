//go:build unix

package memscan

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// mapBuffer returns size bytes of anonymous private memory outside the Go
// heap, so that what is read into it is never copied by the runtime and
// can be wiped for certain. Release it with unmapBuffer.
func mapBuffer(size int) ([]byte, error) {
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("memscan: mmap read buffer: %w", err)
	}
	// The buffer holds a copy of whatever is being scanned, secrets
	// included, for the length of a chunk. Locking keeps that copy off swap
	// and noDump keeps it out of a core dump of the scanner; both are best
	// effort, because a low RLIMIT_MEMLOCK is no reason to refuse a scan.
	_ = unix.Mlock(b)
	noDump(b)
	return b, nil
}

// unmapBuffer wipes b and returns it to the system.
func unmapBuffer(b []byte) error {
	clear(b)
	if err := unix.Munmap(b); err != nil {
		return fmt.Errorf("memscan: munmap read buffer: %w", err)
	}
	return nil
}
