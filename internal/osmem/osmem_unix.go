//go:build unix

package osmem

import (
	"fmt"
	"math"
	"unsafe"

	"golang.org/x/sys/unix"
)

var pageSize = unix.Getpagesize()

// PageSize reports the size of a memory page.
func PageSize() int { return pageSize }

// Map returns a Region whose Data holds n zeroed bytes (n is rounded up to
// whole pages), with a PROT_NONE guard page on each side. The memory is
// private and anonymous and never part of the Go heap, so the garbage
// collector neither scans nor moves it. Release it with Unmap.
//
// Regions of at least one huge page are aligned to it where the platform
// has transparent huge pages, so that random access across them (a shuffle
// writes every entry to a random place) costs few TLB misses. Their length
// is not rounded up to whole huge pages: the system backs the whole huge
// pages inside with huge pages and the tail, under 2 MiB, with base pages.
// Rounded, a region of 4 MiB and a page took 6 MiB, every byte of it
// counted against RLIMIT_MEMLOCK when locked, for a tail that no TLB miss
// saved by it pays for.
//
// Each Region takes up to three of the process's memory mappings, of
// which Linux allows vm.max_map_count; Map refuses with ErrMapLimit once
// the package's share (see MapsHeld) is used up, and on Linux with
// ErrHeadroom where it would leave less than Headroom of RLIMIT_AS or
// RLIMIT_DATA to the rest of the process.
func Map(n int, f Flags) (*Region, error) {
	if n <= 0 || uint64(n) > maxMap || n > math.MaxInt-8<<20 {
		return nil, fmt.Errorf("osmem: map %d bytes: %w", n, unix.ENOMEM)
	}
	if err := takeMaps(); err != nil {
		return nil, err
	}
	if err := checkHeadroom(n, f); err != nil {
		giveMaps()
		return nil, err
	}
	r, err := mapPages(n, f)
	if err != nil {
		giveMaps()
	}
	return r, err
}

// mapPages is Map, once the region's mappings are counted.
func mapPages(n int, f Flags) (*Region, error) {
	n = (n + pageSize - 1) &^ (pageSize - 1)
	if f.Secret {
		return mapSecret(n)
	}
	align := pageSize
	if HugePageSize > 0 && n >= HugePageSize && !f.SmallPages {
		align = HugePageSize
	}
	total := n + 2*pageSize + (align - pageSize)
	if err := injected(OpMap); err != nil {
		return nil, fmt.Errorf("osmem: mmap: %w", err)
	}
	// Map everything inaccessible first and open up the middle, so the guard
	// pages never exist in an accessible state.
	p, err := unix.MmapPtr(-1, 0, nil, uintptr(total), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return nil, fmt.Errorf("osmem: mmap: %w", err)
	}
	base := uintptr(p)
	data := (base + uintptr(pageSize) + uintptr(align) - 1) &^ (uintptr(align) - 1)
	start, end := data-uintptr(pageSize), data+uintptr(n)+uintptr(pageSize)
	// Give back what alignment left over on either side.
	if head := start - base; head > 0 {
		_ = unix.MunmapPtr(p, head)
	}
	if tail := base + uintptr(total) - end; tail > 0 {
		_ = unix.MunmapPtr(unsafe.Add(p, end-base), tail)
	}
	r := &Region{
		start: unsafe.Add(p, start-base),
		size:  end - start,
		Data:  unsafe.Slice((*byte)(unsafe.Add(p, data-base)), n),
	}
	if err := protect(r.Data, unix.PROT_READ|unix.PROT_WRITE); err != nil {
		_ = unix.MunmapPtr(r.start, r.size)
		return nil, err
	}
	if align > pageSize {
		adviseHuge(r.Data)
	} else if f.SmallPages {
		adviseSmall(r.Data)
	}
	// Dump and fork exclusion are set before any secret is written.
	r.DontDump = harden(r.Data) == nil
	if f.Lock || f.StrictLock {
		if err := lock(r.Data); err != nil {
			r.LockErr = err
			if f.StrictLock {
				_ = unix.MunmapPtr(r.start, r.size)
				return nil, fmt.Errorf("%w: %w", ErrLock, err)
			}
		} else {
			r.Locked = true
			r.LockedLen = len(r.Data)
		}
	}
	return r, nil
}

// maxMap and the math.MaxInt check in Map keep the rounding and guard-page
// arithmetic from overflowing.
const maxMap = 1 << 46

// Unmap releases r. The caller wipes whatever it wrote first: unmapped pages
// go back to the kernel with their contents until they are reused.
func Unmap(r *Region) error {
	if r == nil || r.start == nil {
		return nil
	}
	if err := injectedUnmap(r); err != nil {
		return fmt.Errorf("osmem: munmap: %w", err)
	}
	if err := unix.MunmapPtr(r.start, r.size); err != nil {
		return fmt.Errorf("osmem: munmap: %w", err)
	}
	r.start, r.size, r.Data = nil, 0, nil
	giveMaps()
	unmapped(r)
	return nil
}

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
	if err := injectedLock(len(b)); err != nil {
		return fmt.Errorf("osmem: mlock: %w", err)
	}
	if err := unix.Mlock(b); err != nil {
		if err == unix.ENOSYS || err == unix.EPERM && LockLimit() != 0 {
			return fmt.Errorf("osmem: mlock: %w: %w", ErrLockForbidden, err)
		}
		return fmt.Errorf("osmem: mlock: %w", err)
	}
	return nil
}

// LockLimit reports RLIMIT_MEMLOCK, the bytes a process without
// CAP_IPC_LOCK may lock, or -1 when it is unlimited or unknown.
func LockLimit() int64 {
	var lim unix.Rlimit
	if err := getMemlockLimit(&lim); err != nil {
		return -1
	}
	// Cur is a uint64 on Linux and an int64 on the BSDs.
	cur := uint64(lim.Cur)
	if cur == uint64(unix.RLIM_INFINITY) || cur > math.MaxInt64 {
		return -1
	}
	return int64(cur)
}

// BindingLockLimit is LockLimit where the limit holds this process, and -1
// where it does not: no limit, or a process that may lock past it
// (CAP_IPC_LOCK on Linux, root elsewhere). It asks the system each time: a
// service that starts as root and drops its privileges becomes bound.
func BindingLockLimit() int64 {
	lim := LockLimit()
	if lim < 0 || lockPastLimit() {
		return -1
	}
	return lim
}
