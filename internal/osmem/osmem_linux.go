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
	// MADV_WIPEONFORK gives a forked child zeros. Where it is refused (a
	// kernel before 4.14, or a system call filter that does not know the
	// advice), MADV_DONTFORK, which every kernel has, leaves the child no
	// mapping at all, as for secret memory: a child that touches it
	// faults, where otherwise it would get the key and every entry. It
	// comes first: a mapping excluded from dumps but not yet kept from
	// forks, between the calls, looks to a reader of /proc/PID/smaps like
	// a dump-excluded mapping that is not the library's.
	if unix.Madvise(b, unix.MADV_WIPEONFORK) != nil {
		_ = unix.Madvise(b, unix.MADV_DONTFORK)
	}
	if betweenAdvice != nil {
		betweenAdvice(b)
	}
	if err := unix.Madvise(b, unix.MADV_DONTDUMP); err != nil {
		return fmt.Errorf("osmem: madvise(MADV_DONTDUMP): %w", err)
	}
	return nil
}

// betweenAdvice, when a test sets it, sees the region between harden's
// two calls.
var betweenAdvice func(b []byte)

// HugePageSize is the transparent huge page size Map aligns regions of at
// least that size to; it does not round their length (see Map).
const HugePageSize = 2 << 20

// adviseHuge asks for transparent huge pages; where they are disabled the
// region simply keeps small pages.
func adviseHuge(b []byte) { _ = unix.Madvise(b, unix.MADV_HUGEPAGE) }

// adviseSmall keeps transparent huge pages out of b, even where the
// system uses them for every mapping it can.
func adviseSmall(b []byte) { _ = unix.Madvise(b, unix.MADV_NOHUGEPAGE) }

// mapSecret maps n bytes (whole pages) of memfd_secret(2) memory: pages
// that are removed from the kernel's direct map, so not even the kernel
// reads them through it, and that are never swapped.
//
// The kernel picks the address and the guard pages are the mapping's own
// first and last pages, made inaccessible. Mapping it over a reservation of
// ours with MAP_FIXED instead is unsafe: when that mmap fails (EAGAIN once
// the memlock limit is reached), the kernel may already have dropped the
// reservation, another thread may map something into the gap, and undoing
// the reservation would unmap memory that is no longer ours. Here a failed
// mmap leaves nothing to undo, and every unmap covers exactly what this
// mmap returned. The price is that the guard pages count towards the
// memlock limit (the kernel locks the whole mapping); they are never
// touched, so they take no RAM.
func mapSecret(n int) (*Region, error) {
	// The kernel's refusal to lock, which for secret memory is a refused
	// mmap (below), has the fault seam's OpLock: a process with
	// CAP_IPC_LOCK never meets it otherwise. The kernel charges the whole
	// mapping, guard pages included, so that is the length the seam sees.
	if err := injectedLock(n + 2*pageSize); err != nil {
		return nil, fmt.Errorf("%w: mmap of secret memory: %w", ErrLock, err)
	}
	if err := injected(OpMap); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoSecret, err)
	}
	fd, errno := memfdSecret()
	if errno != 0 {
		return nil, fmt.Errorf("%w: memfd_secret: %w", ErrNoSecret, errno)
	}
	defer unix.Close(int(fd))
	total := n + 2*pageSize
	if err := unix.Ftruncate(int(fd), int64(total)); err != nil {
		return nil, fmt.Errorf("%w: ftruncate: %w", ErrNoSecret, err)
	}
	p, err := unix.MmapPtr(int(fd), 0, nil, uintptr(total), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		if err == unix.EAGAIN {
			// The kernel charges secret memory to RLIMIT_MEMLOCK.
			return nil, fmt.Errorf("%w: mmap of %d bytes of secret memory: %w", ErrLock, total, err)
		}
		return nil, fmt.Errorf("%w: mmap: %w", ErrNoSecret, err)
	}
	r := &Region{
		start: p,
		size:  uintptr(total),
		Data:  unsafe.Slice((*byte)(unsafe.Add(p, pageSize)), n),
	}
	// The mapping is shared, and the kernel wipes only private mappings on
	// fork (it refuses MADV_WIPEONFORK here): a forked child would share
	// these pages, and every secret written to them later. Leave the
	// mapping out of children altogether; a child that touches it faults.
	if err := unix.Madvise(unsafe.Slice((*byte)(p), total), unix.MADV_DONTFORK); err != nil {
		_ = unix.MunmapPtr(r.start, r.size)
		return nil, fmt.Errorf("%w: madvise(MADV_DONTFORK): %w", ErrNoSecret, err)
	}
	head := unsafe.Slice((*byte)(p), pageSize)
	tail := unsafe.Slice((*byte)(unsafe.Add(p, pageSize+n)), pageSize)
	if err := protect(head, unix.PROT_NONE); err != nil {
		_ = unix.MunmapPtr(r.start, r.size)
		return nil, err
	}
	if err := protect(tail, unix.PROT_NONE); err != nil {
		_ = unix.MunmapPtr(r.start, r.size)
		return nil, err
	}
	// The kernel marks secret memory excluded from dumps itself
	// (secretmem_mmap sets VM_DONTDUMP), and a dump could not read it
	// anyway: it is out of the direct map. MADV_DONTDUMP refused (a
	// system call filter) changes nothing of that.
	_ = harden(r.Data)
	r.DontDump = true
	// The kernel keeps secret memory resident itself (its mappings carry
	// the locked flag) and refuses mlock on it.
	r.Locked = true
	r.LockedLen = total
	return r, nil
}

// lockPastLimit reports whether the process has CAP_IPC_LOCK in its
// effective set, which lets it lock past RLIMIT_MEMLOCK. A refused capget
// counts as no.
func lockPastLimit() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_IPC_LOCK/32].Effective&(1<<(unix.CAP_IPC_LOCK%32)) != 0
}
