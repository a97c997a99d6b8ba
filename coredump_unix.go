//go:build unix

package memshuffle

import (
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
func DisableCoreDumps() error {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return fmt.Errorf("memshuffle: setrlimit(RLIMIT_CORE): %w", err)
	}
	return notDumpable()
}
