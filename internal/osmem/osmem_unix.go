//go:build unix

package osmem

import (
	"fmt"

	"golang.org/x/sys/unix"
)

var pageSize = unix.Getpagesize()

// PageSize reports the size of a memory page.
func PageSize() int { return pageSize }

// Map returns a Region whose Data holds n zeroed bytes (n is rounded up to
// whole pages), with a PROT_NONE guard page on each side. The memory is
// private and anonymous and never part of the Go heap, so the garbage
// collector neither scans nor moves it. Release it with Unmap.
func Map(n int, f Flags) (*Region, error) {
	if n <= 0 {
		return nil, fmt.Errorf("osmem: map %d bytes: invalid size", n)
	}
	n = (n + pageSize - 1) &^ (pageSize - 1)
	total := n + 2*pageSize
	if total < n {
		return nil, fmt.Errorf("osmem: map %d bytes: %w", n, unix.ENOMEM)
	}
	if err := injected(OpMap); err != nil {
		return nil, fmt.Errorf("osmem: mmap: %w", err)
	}
	// Map everything inaccessible first and open up the middle, so the guard
	// pages never exist in an accessible state.
	full, err := unix.Mmap(-1, 0, total, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return nil, fmt.Errorf("osmem: mmap: %w", err)
	}
	r := &Region{full: full, Data: full[pageSize : pageSize+n : pageSize+n]}
	if err := protect(r.Data, unix.PROT_READ|unix.PROT_WRITE); err != nil {
		unmapAll(full)
		return nil, err
	}
	// Dump and fork exclusion are set before any secret is written.
	r.DontDump = harden(r.Data) == nil
	if f.Lock || f.StrictLock {
		if err := lock(r.Data); err != nil {
			r.LockErr = err
			if f.StrictLock {
				unmapAll(full)
				return nil, fmt.Errorf("%w: %w", ErrLock, err)
			}
		} else {
			r.Locked = true
		}
	}
	return r, nil
}

// Unmap releases r. The caller wipes whatever it wrote first: unmapped pages
// go back to the kernel with their contents until they are reused.
func Unmap(r *Region) error {
	if r == nil || r.full == nil {
		return nil
	}
	if err := injected(OpUnmap); err != nil {
		return fmt.Errorf("osmem: munmap: %w", err)
	}
	if err := unix.Munmap(r.full); err != nil {
		return fmt.Errorf("osmem: munmap: %w", err)
	}
	r.full, r.Data = nil, nil
	return nil
}

func unmapAll(b []byte) { _ = unix.Munmap(b) }

func protect(b []byte, prot int) error {
	if err := injected(OpProtect); err != nil {
		return fmt.Errorf("osmem: mprotect: %w", err)
	}
	if err := unix.Mprotect(b, prot); err != nil {
		return fmt.Errorf("osmem: mprotect: %w", err)
	}
	return nil
}

func lock(b []byte) error {
	if err := injected(OpLock); err != nil {
		return fmt.Errorf("osmem: mlock: %w", err)
	}
	if err := unix.Mlock(b); err != nil {
		return fmt.Errorf("osmem: mlock: %w", err)
	}
	return nil
}
