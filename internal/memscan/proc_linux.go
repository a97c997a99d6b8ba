//go:build linux

package memscan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// Maps returns the memory mappings of process pid in address order, from
// /proc/PID/maps, with Locked and DontDump taken from the VmFlags of
// /proc/PID/smaps (both false on kernels without smaps). Reading another
// process's maps needs the same permission as ptrace-attaching to it. The
// result is a snapshot: the process may change its mappings at any time.
func Maps(pid int) ([]Mapping, error) {
	vs, err := readVMAs(pid)
	if err != nil {
		return nil, err
	}
	ms := make([]Mapping, len(vs))
	for i := range vs {
		ms[i] = vs[i].Mapping
	}
	return ms, nil
}

func readVMAs(pid int) ([]vma, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("%w: %d", ErrInvalidPID, pid)
	}
	maps, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, fmt.Errorf("memscan: %w", err)
	}
	defer maps.Close()
	var smaps io.Reader
	switch f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid)); {
	case err == nil:
		defer f.Close()
		smaps = f
	case errors.Is(err, fs.ErrNotExist):
		// CONFIG_PROC_PAGE_MONITOR=n: no flags, and every page counts
		// as populated.
	default:
		return nil, fmt.Errorf("memscan: %w", err)
	}
	return parseProcMaps(maps, smaps)
}

// ScanProcess returns every occurrence of p in the memory of process pid,
// in address order, reading it through /proc/PID/mem, which needs the same
// permission as ptrace-attaching to pid. The process is not stopped: on a
// running target, a hit is what the memory held at the moment that chunk
// was read.
//
// What is read, and why:
//   - Every mapping, whatever its permissions: /proc/PID/mem reads with
//     ptrace's force flag, so a page the owner made PROT_NONE after writing
//     a secret into it is still searched. Pages that cannot be read at all
//     ([vvar], I/O mappings, anything answering EIO) are skipped, not errors.
//   - Only populated pages (resident or swapped out, per smaps and
//     /proc/PID/pagemap) and the Len()-1 bytes either side of them. A page
//     the process never touched holds zeros or unmodified file contents, and
//     reading it would fault it in, perturbing the target and walking the
//     gigabytes of PROT_NONE reservations a Go or JVM process keeps. So a
//     match lying entirely in untouched pages is not reported.
//   - Contiguous mappings as one stream: a match may straddle two of them,
//     and its Hit carries the mapping holding its first byte.
//
// Reads go through a 1 MiB buffer mapped outside the Go heap (locked and
// excluded from core dumps where allowed), wiped after every chunk and
// unmapped before returning. When pid is the calling process, the buffer's
// own addresses are left out of the scan, so the copy it holds is never
// reported; p itself is held masked and cannot match.
//
// It returns ErrEmptyPattern for a nil or zero p, ErrInvalidPID for
// pid <= 0, a wrapped fs.ErrNotExist or fs.ErrPermission when /proc/PID
// cannot be opened, and ErrProcessExited when the process goes away midway.
//
// ScanProcess is ScanProcessAll with one pattern; to look for several, use
// ScanProcessAll, which reads the memory once for all of them.
func ScanProcess(pid int, p *Pattern) ([]Hit, error) {
	return first(ScanProcessAll(pid, []*Pattern{p}))
}

// ScanProcessAll searches the memory of process pid for every pattern of ps
// in one pass and returns the hits of ps[i] in result[i], in address order.
// The result has len(ps) entries, nil where a pattern was not found; after
// an error during the scan it holds the hits found until then.
//
// Each result is what ScanProcess(pid, ps[i]) would report of the same
// memory: the populated pages are widened by one byte less than the longest
// pattern for reading, and a hit of a shorter pattern is kept only when it
// lies inside the ranges ScanProcess would have read for it. As with
// ScanProcess the target keeps running, so a secret that moves during the
// scan may be seen by one pattern and missed by another.
//
// Runs of zeros in the memory read are skipped as in ScanCoreAll. It returns
// ErrEmptyPattern when any pattern is nil or zero, and otherwise the errors
// of ScanProcess.
func ScanProcessAll(pid int, ps []*Pattern) ([][]Hit, error) {
	if err := checkAll(ps); err != nil {
		return nil, err
	}
	vs, err := readVMAs(pid)
	if err != nil {
		return nil, err
	}
	if len(vs) == 0 {
		// No user memory, as a kernel thread or a zombie has: its mem
		// file will not open (ESRCH), and there is nothing to read.
		return make([][]Hit, len(ps)), nil
	}
	memPath := fmt.Sprintf("/proc/%d/mem", pid)
	mem, err := openRead(memPath)
	if err != nil {
		return nil, err
	}
	defer unix.Close(mem)
	if len(ps) == 0 {
		return make([][]Hit, 0), nil
	}
	pm := openPagemap(pid)
	defer pm.close()
	ms := make([]Mapping, len(vs))
	for i := range vs {
		ms[i] = vs[i].Mapping
	}
	populated := func(i int, yield func(a, b uint64) error) error {
		v := &vs[i]
		// pread takes a signed offset; only [vsyscall] lives up there, and
		// it reads as EINVAL anyway.
		if v.End > math.MaxInt64 || (v.residentKnown && v.resident == 0) {
			return nil
		}
		return pm.populated(v.Start, v.End, yield)
	}
	return scanLive(pid, ps, ms, populated, memReader(mem, memPath))
}

// openRead opens path read-only as a raw descriptor: the reads go straight
// into the off-heap buffer with pread, and os.File would refuse offsets
// above 2^63 with an error indistinguishable from a real one.
func openRead(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("memscan: %w", &fs.PathError{Op: "open", Path: path, Err: err})
		}
		return fd, nil
	}
}

// memReader reads /proc/PID/mem, sorting the kernel's answers into the
// readFunc contract.
func memReader(fd int, path string) readFunc {
	return func(dst []byte, addr uint64) (int, error) {
		if addr > math.MaxInt64 {
			return 0, errUnreadable
		}
		for {
			n, err := unix.Pread(fd, dst, int64(addr))
			switch err {
			case nil:
				if n == 0 {
					// mem_rw returns 0 only once the mm is gone.
					return 0, ErrProcessExited
				}
				return n, nil
			case unix.EINTR:
				continue
			case unix.EIO, unix.EFAULT, unix.EINVAL:
				// EIO: no page could be had (a [vvar] page, a PFN
				// mapping, a file mapping past EOF); EINVAL: offset
				// out of range.
				return 0, errUnreadable
			}
			return 0, fmt.Errorf("memscan: %w", &fs.PathError{Op: fmt.Sprintf("pread at %#x", addr), Path: path, Err: err})
		}
	}
}

// pagemap reads /proc/PID/pagemap: one 64-bit entry per virtual page.
type pagemap struct {
	fd       int
	pageSize uint64
	entries  []byte // page flags only, never memory contents
}

// Bits of a pagemap entry, see Documentation/admin-guide/mm/pagemap.rst.
const (
	pmPresent = 1 << 63
	pmSwapped = 1 << 62
)

// openPagemap returns nil when pagemap cannot be opened; a nil pagemap
// reports every page as populated.
func openPagemap(pid int) *pagemap {
	fd, err := openRead(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		return nil
	}
	return &pagemap{fd: fd, pageSize: uint64(os.Getpagesize()), entries: make([]byte, 64<<10)}
}

func (pm *pagemap) close() {
	if pm != nil {
		unix.Close(pm.fd)
	}
}

// populated calls yield for each maximal run of resident or swapped pages in
// the page-aligned range [start, end), in order. Where pagemap cannot answer
// it yields the rest of the range: reading too much is slow, reading too
// little misses secrets.
func (pm *pagemap) populated(start, end uint64, yield func(a, b uint64) error) error {
	if pm == nil {
		return yield(start, end)
	}
	ps := pm.pageSize
	var run uint64
	inRun := false
	addr := start
	for addr < end {
		pages := min((end-addr)/ps, uint64(len(pm.entries)/8))
		if pages == 0 { // an unaligned end; cannot happen with real maps
			break
		}
		n, err := unix.Pread(pm.fd, pm.entries[:pages*8], int64(addr/ps*8))
		if err == unix.EINTR {
			continue
		}
		if err != nil || n < 8 {
			break
		}
		for e := 0; e+8 <= n; e += 8 {
			if binary.NativeEndian.Uint64(pm.entries[e:])&(pmPresent|pmSwapped) != 0 {
				if !inRun {
					run, inRun = addr, true
				}
			} else if inRun {
				if err := yield(run, addr); err != nil {
					return err
				}
				inRun = false
			}
			addr += ps
		}
	}
	if addr < end && !inRun {
		run, inRun = addr, true
	}
	if inRun {
		return yield(run, end)
	}
	return nil
}

// noDump keeps b out of core dumps of the scanner.
func noDump(b []byte) {
	_ = unix.Madvise(b, unix.MADV_DONTDUMP)
}
