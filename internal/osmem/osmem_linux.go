//go:build linux

package osmem

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// harden keeps b out of core dumps and makes a forked child see zeros
// instead of the parent's secrets.
func harden(b []byte) error {
	if err := injected(OpAdvise); err != nil {
		return fmt.Errorf("osmem: madvise: %w", err)
	}
	if err := unix.Madvise(b, unix.MADV_DONTDUMP); err != nil {
		return fmt.Errorf("osmem: madvise(MADV_DONTDUMP): %w", err)
	}
	// MADV_WIPEONFORK exists since Linux 4.14; older kernels leave fork
	// exclusion to the caller, which is not worth failing the mapping for.
	_ = unix.Madvise(b, unix.MADV_WIPEONFORK)
	return nil
}

// hugePageSize is the transparent huge page size Map aligns large regions
// to.
const hugePageSize = 2 << 20

// adviseHuge asks for transparent huge pages; where they are disabled the
// region simply keeps small pages.
func adviseHuge(b []byte) { _ = unix.Madvise(b, unix.MADV_HUGEPAGE) }

// mapSecret replaces b, part of an inaccessible reservation, with memory
// from memfd_secret(2): pages that are removed from the kernel's direct map,
// so not even the kernel reads them through it, and that are never swapped.
func mapSecret(b []byte) error {
	if err := injected(OpMap); err != nil {
		return fmt.Errorf("%w: %w", ErrNoSecret, err)
	}
	fd, _, errno := unix.Syscall(unix.SYS_MEMFD_SECRET, unix.O_CLOEXEC, 0, 0)
	if errno != 0 {
		return fmt.Errorf("%w: memfd_secret: %w", ErrNoSecret, errno)
	}
	defer unix.Close(int(fd))
	if err := unix.Ftruncate(int(fd), int64(len(b))); err != nil {
		return fmt.Errorf("%w: ftruncate: %w", ErrNoSecret, err)
	}
	_, err := unix.MmapPtr(int(fd), 0, unsafe.Pointer(&b[0]), uintptr(len(b)),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_FIXED)
	if err != nil {
		return fmt.Errorf("%w: mmap: %w", ErrNoSecret, err)
	}
	return nil
}
