//go:build windows

package osmem

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/windows"
)

// HugePageSize is zero: Map asks for no large pages, which on Windows need
// SeLockMemoryPrivilege and are never paged out or trimmed.
const HugePageSize = 0

// pageSize is GetSystemInfo's dwPageSize, the granule VirtualProtect and
// VirtualLock work in. The Go runtime reads it at start-up and
// os.Getpagesize reports it; x/sys/windows has no GetSystemInfo and its
// Getpagesize is a constant. VirtualAlloc places allocations on 64 KiB
// boundaries (the allocation granularity), but that only wastes address
// space after a region: guards and rounding need the page size.
var pageSize = os.Getpagesize()

// PageSize reports the size of a memory page.
func PageSize() int { return pageSize }

// maxMap and the math.MaxInt check in Map keep the rounding and guard-page
// arithmetic from overflowing.
const maxMap = 1 << 46

// Map returns a Region whose Data holds n zeroed bytes (n is rounded up to
// whole pages), with a PAGE_NOACCESS guard page on each side. The memory is
// private, committed with VirtualAlloc and never part of the Go heap, so the
// garbage collector neither scans nor moves it. Release it with Unmap.
//
// What Windows provides, against the Unix implementation:
//
//   - Locking (Flags.Lock, Flags.StrictLock) uses VirtualLock, which can
//     lock no more than the process's minimum working set (by default a few
//     hundred KiB). When it fails with ERROR_WORKING_SET_QUOTA, Map raises
//     the minimum and maximum working set by the region's size with
//     SetProcessWorkingSetSizeEx, once, and retries. The raised limits stay:
//     Unmap unlocks, which frees room under them for later regions, so they
//     grow with the peak of locked memory, not with every Map. A failure is
//     reported as on Unix.
//   - Dump exclusion covers the crash dumps Windows writes itself: the
//     region is registered with WerRegisterExcludedMemoryBlock (Windows 10
//     version 1703 and later), which Windows Error Reporting honours, and
//     Region.DontDump says whether that worked. WER takes a limited number
//     of registrations per process (WER_MAX_REGISTERED_ENTRIES), so past
//     that regions stay dumpable and say so. A dump written on request by
//     another tool (MiniDumpWriteDump, Task Manager, procdump, a debugger)
//     includes whatever that tool chooses, these pages too.
//   - Fork exclusion is not needed: Windows has no fork, and a child made
//     by CreateProcess never shares or copies its parent's address space.
//   - Secret memory (Flags.Secret) has no counterpart to memfd_secret(2):
//     Map returns an error wrapping ErrNoSecret.
//   - Large pages need SeLockMemoryPrivilege and are not used.
func Map(n int, f Flags) (*Region, error) {
	if n <= 0 {
		return nil, fmt.Errorf("osmem: map %d bytes: %w", n, windows.ERROR_INVALID_PARAMETER)
	}
	if uint64(n) > maxMap || n > math.MaxInt-8<<20 {
		return nil, fmt.Errorf("osmem: map %d bytes: %w", n, windows.ERROR_NOT_ENOUGH_MEMORY)
	}
	if f.Secret {
		return nil, fmt.Errorf("%w: Windows has no memfd_secret counterpart", ErrNoSecret)
	}
	n = (n + pageSize - 1) &^ (pageSize - 1)
	total := uintptr(n) + 2*uintptr(pageSize)
	if err := injected(OpMap); err != nil {
		return nil, fmt.Errorf("osmem: VirtualAlloc: %w", err)
	}
	// Commit everything inaccessible and open up the middle, so the guard
	// pages never exist in an accessible state. Committed PAGE_NOACCESS
	// guards cost two pages of commit charge and no RAM: nothing touches
	// them.
	base, err := windows.VirtualAlloc(0, total, windows.MEM_RESERVE|windows.MEM_COMMIT, windows.PAGE_NOACCESS)
	if err != nil {
		return nil, fmt.Errorf("osmem: VirtualAlloc: %w", err)
	}
	start := ptr(base)
	r := &Region{
		start: start,
		size:  total,
		Data:  unsafe.Slice((*byte)(unsafe.Add(start, pageSize)), n),
	}
	if err := protect(r.Data, windows.PAGE_READWRITE); err != nil {
		_ = windows.VirtualFree(base, 0, windows.MEM_RELEASE)
		return nil, err
	}
	// Locked before any secret is written, so none reaches the pagefile.
	if f.Lock || f.StrictLock {
		if err := lock(r.Data); err != nil {
			r.LockErr = err
			if f.StrictLock {
				_ = windows.VirtualFree(base, 0, windows.MEM_RELEASE)
				return nil, fmt.Errorf("%w: %w", ErrLock, err)
			}
		} else {
			r.Locked = true
			r.LockedLen = len(r.Data)
		}
	}
	// Last, so that no failure above has a registration to undo; nothing
	// is written to the region before Map returns.
	r.DontDump = excludeFromDumps(r.Data)
	return r, nil
}

// Unmap releases r. The caller wipes whatever it wrote first: released
// pages go back to the system with their contents until they are reused.
// Unmapping a released Region again does nothing.
func Unmap(r *Region) error {
	if r == nil || r.start == nil {
		return nil
	}
	if err := injectedUnmap(r); err != nil {
		return fmt.Errorf("osmem: VirtualFree: %w", err)
	}
	excluded, locked := r.DontDump, r.Locked
	if r.DontDump {
		// Unregistered first: once the pages are released, another Map may
		// get the same address and register it for itself.
		includeInDumps(r.Data)
		r.DontDump = false
	}
	if r.Locked {
		// Unlocking returns the pages' share of the working-set minimum
		// for later regions to lock. A failure is no reason to keep the
		// region: releasing frees locked pages too.
		if windows.VirtualUnlock(uintptr(unsafe.Pointer(unsafe.SliceData(r.Data))), uintptr(len(r.Data))) == nil {
			r.Locked, r.LockedLen = false, 0
		}
	}
	if err := windows.VirtualFree(uintptr(r.start), 0, windows.MEM_RELEASE); err != nil {
		// The region stays its owner's, and an arena goes on taking
		// entries: lock and exclude it again, as Map did. A lock refused
		// now is recorded for Relock, as one refused by Map is; the
		// region is reported as it is left.
		if locked && !r.Locked {
			if lerr := lock(r.Data); lerr != nil {
				r.LockErr = lerr
			} else {
				r.Locked, r.LockedLen = true, len(r.Data)
			}
		}
		if excluded {
			r.DontDump = excludeFromDumps(r.Data)
		}
		return fmt.Errorf("osmem: VirtualFree: %w", err)
	}
	r.start, r.size, r.Data = nil, 0, nil
	unmapped(r)
	return nil
}

// ptr turns an address from VirtualAlloc into a pointer. The memory is
// outside the Go heap, so the collector never needs to track it; loading the
// pointer through memory instead of converting the integer keeps vet's
// unsafeptr check, which cannot tell, from flagging a conversion that is
// sound here.
func ptr(addr uintptr) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Pointer(&addr))
}

func protect(b []byte, prot uint32) error {
	if err := injected(OpProtect); err != nil {
		return fmt.Errorf("osmem: VirtualProtect: %w", err)
	}
	var old uint32
	if err := windows.VirtualProtect(uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), prot, &old); err != nil {
		return fmt.Errorf("osmem: VirtualProtect: %w", err)
	}
	return nil
}

// lock locks b into RAM, raising the working set once if that is what
// stands in the way. The raise and the retry count as the same operation
// for the fault hook.
func lock(b []byte) error {
	if err := injectedLock(len(b)); err != nil {
		return fmt.Errorf("osmem: VirtualLock: %w", err)
	}
	addr, size := uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b))
	err := windows.VirtualLock(addr, size)
	if errors.Is(err, windows.ERROR_WORKING_SET_QUOTA) {
		if gerr := growWorkingSet(size); gerr != nil {
			return fmt.Errorf("osmem: VirtualLock: %w (raising the working set: %w)", err, gerr)
		}
		err = windows.VirtualLock(addr, size)
	}
	if err != nil {
		return fmt.Errorf("osmem: VirtualLock: %w", err)
	}
	return nil
}

// wsMu serializes working-set changes, so that two Maps growing it at once
// both get their share instead of one overwriting the other's.
var wsMu sync.Mutex

// growWorkingSet raises the process's minimum and maximum working set by
// size. VirtualLock can lock no more than the minimum (less a few pages the
// system keeps for itself), and the maximum must stay above the minimum.
// The hard/soft limit flags are written back as they were read.
func growWorkingSet(size uintptr) error {
	wsMu.Lock()
	defer wsMu.Unlock()
	h := windows.CurrentProcess()
	var lo, hi uintptr
	var flags uint32
	// x/sys declares GetProcessWorkingSetSizeEx without an error result;
	// a failed call leaves the sizes at zero.
	windows.GetProcessWorkingSetSizeEx(h, &lo, &hi, &flags)
	if hi == 0 {
		return errors.New("osmem: GetProcessWorkingSetSizeEx failed")
	}
	if lo > math.MaxUint-size || hi > math.MaxUint-size {
		return fmt.Errorf("osmem: working set of %d bytes cannot grow by %d", hi, size)
	}
	if err := windows.SetProcessWorkingSetSizeEx(h, lo+size, hi+size, flags); err != nil {
		return fmt.Errorf("osmem: SetProcessWorkingSetSizeEx: %w", err)
	}
	return nil
}

var (
	kernel32                        = windows.NewLazySystemDLL("kernel32.dll")
	procWerRegisterExcludedMemory   = kernel32.NewProc("WerRegisterExcludedMemoryBlock")
	procWerUnregisterExcludedMemory = kernel32.NewProc("WerUnregisterExcludedMemoryBlock")
)

// excludeFromDumps asks Windows Error Reporting to leave b out of the crash
// dumps it writes, and reports whether it agreed. Windows before 10 version
// 1703 (and Wine) lack the call. The fault hook sees it as OpAdvise, the
// counterpart of madvise(MADV_DONTDUMP).
func excludeFromDumps(b []byte) bool {
	if injected(OpAdvise) != nil {
		return false
	}
	// The size is a DWORD; an arena never comes near 4 GiB, but a larger
	// region is left dumpable rather than registered in part.
	if uint64(len(b)) > math.MaxUint32 || procWerRegisterExcludedMemory.Find() != nil {
		return false
	}
	hr, _, _ := procWerRegisterExcludedMemory.Call(uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	return int32(hr) >= 0 // an HRESULT: negative on failure
}

// includeInDumps removes the registration made by excludeFromDumps. Its
// result is ignored: the registration goes away with the process anyway,
// and failing to drop it only costs one of WER's entries.
func includeInDumps(b []byte) {
	if procWerUnregisterExcludedMemory.Find() != nil {
		return
	}
	_, _, _ = procWerUnregisterExcludedMemory.Call(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

// LockLimit is -1 on Windows: what may be locked follows the working set,
// which Map grows as needed, not a fixed limit.
func LockLimit() int64 { return -1 }

// BindingLockLimit is LockLimit.
func BindingLockLimit() int64 { return -1 }
