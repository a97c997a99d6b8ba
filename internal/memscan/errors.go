package memscan

import (
	"errors"
	"fmt"
	"runtime"
)

var (
	// ErrEmptyPattern is returned by NewPattern and ReadPattern when the
	// pattern has no bytes, and by the scan functions when given a nil or
	// zero Pattern.
	ErrEmptyPattern = errors.New("memscan: empty pattern")

	// ErrPatternTooLong is returned by NewPattern and ReadPattern when the
	// pattern is longer than MaxPatternLen bytes.
	ErrPatternTooLong = fmt.Errorf("memscan: pattern longer than %d bytes", MaxPatternLen)

	// ErrInvalidPID is returned by Maps and ScanProcess when the pid is not
	// positive.
	ErrInvalidPID = errors.New("memscan: invalid pid")

	// ErrBadMaps is returned when a line of /proc/PID/maps or
	// /proc/PID/smaps cannot be parsed.
	ErrBadMaps = errors.New("memscan: malformed maps")

	// ErrProcessExited is returned by ScanProcess when the target's address
	// space goes away while it is being read.
	ErrProcessExited = errors.New("memscan: process exited during scan")

	// ErrNotCore is returned by ScanCore when the file is not an ELF core
	// file; the ELF decoder's error, if any, is wrapped as well.
	ErrNotCore = errors.New("memscan: not an ELF core file")

	// ErrUnsupported is returned where the platform cannot do what was
	// asked: process scanning needs Linux's /proc, and every read goes
	// through an mmap'd buffer, which needs a Unix. errors.Is also matches it
	// against errors.ErrUnsupported.
	ErrUnsupported = fmt.Errorf("memscan: not supported on %s: %w", runtime.GOOS, errors.ErrUnsupported)
)

var (
	// ErrNotDumped is returned by Core.ReadAt when part of the range asked
	// for lies outside the bytes the core file stores: in no PT_LOAD
	// segment, or in the tail of one that the dumper left out.
	ErrNotDumped = errors.New("memscan: address not dumped in the core")

	// ErrCoreArch is returned by Core.Threads and Core.SignalFrameAt for a
	// core of another machine than x86-64, whose register and signal frame
	// layouts this package does not know.
	ErrCoreArch = errors.New("memscan: core is not of an x86-64 process")

	// ErrNoSignalFrame is returned by Core.SignalFrameAt when the address
	// lies in no x86-64 signal frame it can recognise.
	ErrNoSignalFrame = errors.New("memscan: address in no signal frame")
)
