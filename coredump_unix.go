//go:build unix

package memshuffle

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// DisableCoreDumps stops the whole process from writing core dumps: it sets
// RLIMIT_CORE to 0 and, on Linux, marks the process not dumpable
// (PR_SET_DUMPABLE 0), which also keeps other processes of the same user
// from attaching with ptrace or reading /proc/PID/mem. It is never called
// for you: importing memshuffle changes nothing about the process. Arenas
// are excluded from core dumps regardless; this covers everything else,
// such as copies a program made of a rented value.
//
// When one of the two is refused (a system call filter that denies
// setrlimit), the other is still done, and the error names the one that
// failed. On Linux a process that is not dumpable writes no core dump at
// all, also to a handler that core_pattern pipes it to, which the kernel
// does not hold to RLIMIT_CORE. A change of the process's user or group
// IDs makes it dumpable again wherever fs.suid_dumpable is not 0: call
// DisableCoreDumps after dropping privileges.
func DisableCoreDumps() error {
	var errLimit error
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		errLimit = fmt.Errorf("memshuffle: setrlimit(RLIMIT_CORE): %w", err)
	}
	return errors.Join(errLimit, notDumpable())
}
