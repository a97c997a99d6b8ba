//go:build unix && !linux

package osmem

// harden has no portable way to exclude memory from dumps outside Linux.
func harden(b []byte) error { return errNoDontDump }

const hugePageSize = 0

func adviseHuge([]byte) {}
