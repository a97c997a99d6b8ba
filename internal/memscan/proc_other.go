//go:build !linux && !windows

package memscan

// Maps returns ErrUnsupported: only Linux describes a process's mappings in
// /proc.
func Maps(pid int) ([]Mapping, error) { return nil, ErrUnsupported }

// ScanProcess returns ErrUnsupported: only Linux exposes another process's
// memory as /proc/PID/mem.
func ScanProcess(pid int, p *Pattern) ([]Hit, error) { return nil, ErrUnsupported }

// ScanProcessAll returns ErrUnsupported, as ScanProcess does.
func ScanProcessAll(pid int, ps []*Pattern) ([][]Hit, error) { return nil, ErrUnsupported }

// noDump does nothing: MADV_DONTDUMP is Linux's.
func noDump([]byte) {}
