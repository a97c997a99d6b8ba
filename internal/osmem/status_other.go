//go:build !linux

package osmem

// VMLocked reports false: only Linux tells a process its locked memory.
func VMLocked() (locked uint64, ok bool) { return 0, false }
