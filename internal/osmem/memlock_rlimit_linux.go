//go:build linux

package osmem

import (
	"bytes"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// getMemlockLimit reads RLIMIT_MEMLOCK (see getLimit).
func getMemlockLimit(lim *unix.Rlimit) error {
	l, err := getLimit(unix.RLIMIT_MEMLOCK, "Max locked memory")
	if err == nil {
		*lim = l
	}
	return err
}

// getLimit reads the limit on resource. A system call filter may refuse
// prlimit64 (and getrlimit) without lifting the limit, which the kernel
// reports in /proc/self/limits as well: the line named name there stands
// in for the refused call, so that a limit still reads as one. The error
// is the call's, where neither answers.
func getLimit(resource int, name string) (unix.Rlimit, error) {
	var lim unix.Rlimit
	err := unix.Getrlimit(resource, &lim)
	if err == nil {
		return lim, nil
	}
	if l, ok := procLimit(name); ok {
		return l, nil
	}
	return unix.Rlimit{}, err
}

// readLimits reads /proc/self/limits; tests replace it to take it away.
var readLimits = func() ([]byte, error) { return os.ReadFile("/proc/self/limits") }

// procLimit returns the soft and hard limits of the line of
// /proc/self/limits named name, RLIM_INFINITY for "unlimited".
func procLimit(name string) (unix.Rlimit, bool) {
	raw, err := readLimits()
	if err != nil {
		return unix.Rlimit{}, false
	}
	for line := range bytes.SplitSeq(raw, []byte("\n")) {
		rest, found := bytes.CutPrefix(line, []byte(name))
		if !found {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) < 2 {
			return unix.Rlimit{}, false
		}
		cur, okCur := parseLimit(f[0])
		hard, okHard := parseLimit(f[1])
		return unix.Rlimit{Cur: cur, Max: hard}, okCur && okHard
	}
	return unix.Rlimit{}, false
}

// parseLimit reads one value of a /proc/self/limits line.
func parseLimit(b []byte) (uint64, bool) {
	if string(b) == "unlimited" {
		return unix.RLIM_INFINITY, true
	}
	v, err := strconv.ParseUint(string(b), 10, 64)
	return v, err == nil
}
