//go:build !linux

package memscan

// SignalFrameOf attributes nothing off Linux: the frame layouts it knows
// are the Linux kernel's.
func SignalFrameOf(addr uint64) string { return "not attributed off Linux" }

// InSignalFrame is false off Linux, as SignalFrameOf attributes nothing.
func InSignalFrame(addr uint64) bool { return false }
