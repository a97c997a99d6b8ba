//go:build windows

package memscan

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"unsafe"

	"golang.org/x/sys/windows"
)

// processAccess is what a scan needs: VirtualQueryEx, ReadProcessMemory,
// and waiting on the handle to tell an exited process from a hole.
const processAccess = windows.PROCESS_QUERY_INFORMATION | windows.PROCESS_VM_READ | windows.SYNCHRONIZE

// region is one VirtualQueryEx region of committed memory.
type region struct {
	Mapping
	readable bool // neither PAGE_NOACCESS, execute-only nor PAGE_GUARD
}

// Maps returns the committed memory regions of process pid in address
// order, from VirtualQueryEx: one Mapping per run of pages with the same
// state, protection and type. Perms are spelled as in /proc/PID/maps ("p"
// for MEM_PRIVATE, "s" for image and file views), Path is the file behind an
// image or view in NT device form (\Device\HarddiskVolume1\...), and Locked
// and DontDump are always false: Windows reports locking per page, and
// Windows Error Reporting's exclusions cannot be read back. Reserved and
// free address space is left out. Opening another process needs
// PROCESS_QUERY_INFORMATION and PROCESS_VM_READ access to it.
func Maps(pid int) ([]Mapping, error) {
	h, err := openProcess(pid)
	if err != nil {
		return nil, err
	}
	defer windows.CloseHandle(h)
	rs, err := queryRegions(h)
	if err != nil {
		return nil, err
	}
	ms := make([]Mapping, len(rs))
	for i := range rs {
		ms[i] = rs[i].Mapping
	}
	return ms, nil
}

// ScanProcess returns every occurrence of p in the committed memory of
// process pid, in address order, reading it with ReadProcessMemory. The
// process is not stopped: on a running target, a hit is what the memory held
// at the moment that chunk was read.
//
// Unlike /proc/PID/mem on Linux, ReadProcessMemory honours page protection,
// so pages that are PAGE_NOACCESS, execute-only or PAGE_GUARD are not
// searched (reading a guard page would also disarm it). Every other
// committed page is read, which brings a paged-out page back in. Contiguous
// regions are read as one stream, so a match may straddle two of them.
//
// Reads go through a 1 MiB buffer from VirtualAlloc, outside the Go heap
// (locked where the working set allows), wiped after every chunk and
// released before returning. When pid is the calling process, the buffer's
// own addresses are left out of the scan.
//
// It returns ErrEmptyPattern for a nil or zero p, ErrInvalidPID for
// pid <= 0, a wrapped fs.ErrNotExist when there is no such process or
// fs.ErrPermission when it may not be opened, and ErrProcessExited when the
// process goes away midway.
func ScanProcess(pid int, p *Pattern) ([]Hit, error) {
	return first(ScanProcessAll(pid, []*Pattern{p}))
}

// ScanProcessAll searches the memory of process pid for every pattern of ps
// in one pass and returns the hits of ps[i] in result[i], in address order,
// as the Linux version does; see ScanProcess for what is read.
func ScanProcessAll(pid int, ps []*Pattern) ([][]Hit, error) {
	if err := checkAll(ps); err != nil {
		return nil, err
	}
	h, err := openProcess(pid)
	if err != nil {
		return nil, err
	}
	defer windows.CloseHandle(h)
	regions, err := queryRegions(h)
	if err != nil {
		return nil, err
	}
	ms := make([]Mapping, len(regions))
	for i := range regions {
		ms[i] = regions[i].Mapping
	}
	populated := func(i int, yield func(a, b uint64) error) error {
		if !regions[i].readable {
			return nil
		}
		return yield(regions[i].Start, regions[i].End)
	}
	return scanLive(pid, ps, ms, populated, processReader(h, uint64(os.Getpagesize())))
}

func openProcess(pid int) (windows.Handle, error) {
	if pid <= 0 {
		return 0, fmt.Errorf("%w: %d", ErrInvalidPID, pid)
	}
	if uint64(pid) > math.MaxUint32 {
		return 0, fmt.Errorf("memscan: open process %d: %w", pid, fs.ErrNotExist)
	}
	h, err := windows.OpenProcess(processAccess, false, uint32(pid))
	switch {
	case errors.Is(err, windows.ERROR_INVALID_PARAMETER):
		// What OpenProcess says for a process id nobody has.
		return 0, fmt.Errorf("memscan: open process %d: %w", pid, fs.ErrNotExist)
	case err != nil:
		// ERROR_ACCESS_DENIED matches fs.ErrPermission.
		return 0, fmt.Errorf("memscan: open process %d: %w", pid, err)
	}
	return h, nil
}

// Values from winnt.h that x/sys/windows does not name.
const (
	pageTypeMask = 0xff // the PAGE_* constant without its modifiers
	memPrivate   = 0x20000
	memMapped    = 0x40000
	memImage     = 0x1000000
)

func queryRegions(h windows.Handle) ([]region, error) {
	var rs []region
	var addr uintptr
	for {
		var mbi windows.MemoryBasicInformation
		if err := windows.VirtualQueryEx(h, addr, &mbi, unsafe.Sizeof(mbi)); err != nil {
			if errors.Is(err, windows.ERROR_INVALID_PARAMETER) {
				break // past the highest user-mode address
			}
			if exited(h) {
				return nil, ErrProcessExited
			}
			return nil, fmt.Errorf("memscan: VirtualQueryEx at %#x: %w", addr, err)
		}
		end := mbi.BaseAddress + mbi.RegionSize
		if mbi.State == windows.MEM_COMMIT {
			r := region{Mapping: Mapping{
				Start: uint64(mbi.BaseAddress),
				End:   uint64(end),
				Perms: perms(mbi.Protect, mbi.Type),
			}}
			base := mbi.Protect & pageTypeMask
			r.readable = mbi.Protect&windows.PAGE_GUARD == 0 &&
				base != windows.PAGE_NOACCESS && base != windows.PAGE_EXECUTE
			if mbi.Type == memImage || mbi.Type == memMapped {
				r.Path = mappedFileName(h, mbi.BaseAddress)
			}
			rs = append(rs, r)
		}
		if end <= addr {
			break // wrapped around the top of the address space
		}
		addr = end
	}
	if len(rs) == 0 && exited(h) {
		// A running process always has committed memory.
		return nil, ErrProcessExited
	}
	return rs, nil
}

// exited reports whether the process behind h has ended.
func exited(h windows.Handle) bool {
	ev, err := windows.WaitForSingleObject(h, 0)
	return err == nil && ev == windows.WAIT_OBJECT_0
}

// perms spells a page protection as /proc/PID/maps does.
func perms(protect, typ uint32) string {
	var p string
	switch protect & pageTypeMask {
	case windows.PAGE_READONLY:
		p = "r--"
	case windows.PAGE_READWRITE, windows.PAGE_WRITECOPY:
		p = "rw-"
	case windows.PAGE_EXECUTE:
		p = "--x"
	case windows.PAGE_EXECUTE_READ:
		p = "r-x"
	case windows.PAGE_EXECUTE_READWRITE, windows.PAGE_EXECUTE_WRITECOPY:
		p = "rwx"
	default: // PAGE_NOACCESS
		p = "---"
	}
	if typ == memPrivate {
		return p + "p"
	}
	return p + "s"
}

var procGetMappedFileName = windows.NewLazySystemDLL("kernel32.dll").NewProc("K32GetMappedFileNameW")

// mappedFileName returns the file behind the image or view at addr, or ""
// when Windows cannot say.
func mappedFileName(h windows.Handle, addr uintptr) string {
	if procGetMappedFileName.Find() != nil {
		return ""
	}
	var name [windows.MAX_LONG_PATH]uint16
	n, _, _ := procGetMappedFileName.Call(uintptr(h), addr, uintptr(unsafe.Pointer(&name[0])), uintptr(len(name)))
	if n == 0 || n > uintptr(len(name)) {
		return ""
	}
	return windows.UTF16ToString(name[:n])
}

// processReader reads the target's memory with ReadProcessMemory, sorting
// its answers into the readFunc contract.
func processReader(h windows.Handle, pageSize uint64) readFunc {
	return func(dst []byte, addr uint64) (int, error) {
		if addr > math.MaxUint-uint64(len(dst)) {
			return 0, errUnreadable
		}
		var n uintptr
		err := windows.ReadProcessMemory(h, uintptr(addr), &dst[0], uintptr(len(dst)), &n)
		if err == nil || n > 0 {
			return int(n), nil // the scanner asks again for the rest
		}
		// A read that runs into an inaccessible page may fail whole, with
		// nothing copied: try up to the end of the first page alone.
		if first := (addr | (pageSize - 1)) + 1 - addr; first < uint64(len(dst)) {
			err = windows.ReadProcessMemory(h, uintptr(addr), &dst[0], uintptr(first), &n)
			if err == nil || n > 0 {
				return int(n), nil
			}
		}
		if exited(h) {
			return 0, ErrProcessExited
		}
		if errors.Is(err, windows.ERROR_PARTIAL_COPY) || errors.Is(err, windows.ERROR_NOACCESS) {
			return 0, errUnreadable
		}
		return 0, fmt.Errorf("memscan: ReadProcessMemory at %#x: %w", addr, err)
	}
}
