//go:build linux

package osmem

import (
	"bytes"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// getMemlockLimit reads RLIMIT_MEMLOCK. A system call filter may refuse
// prlimit64 (and getrlimit) without lifting the limit, which the kernel
// reports in /proc/self/limits as well: the soft limit read there stands
// in for the refused call, so that a limit still reads as one.
func getMemlockLimit(lim *unix.Rlimit) error {
	err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, lim)
	if err == nil {
		return nil
	}
	if cur, ok := procMemlockLimit(); ok {
		lim.Cur = cur
		return nil
	}
	return err
}

// procMemlockLimit returns the soft limit of the "Max locked memory" line
// of /proc/self/limits, RLIM_INFINITY for "unlimited".
func procMemlockLimit() (uint64, bool) {
	raw, err := os.ReadFile("/proc/self/limits")
	if err != nil {
		return 0, false
	}
	const name = "Max locked memory"
	for line := range bytes.SplitSeq(raw, []byte("\n")) {
		rest, found := bytes.CutPrefix(line, []byte(name))
		if !found {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) < 1 {
			return 0, false
		}
		if string(f[0]) == "unlimited" {
			return unix.RLIM_INFINITY, true
		}
		cur, err := strconv.ParseUint(string(f[0]), 10, 64)
		return cur, err == nil
	}
	return 0, false
}
