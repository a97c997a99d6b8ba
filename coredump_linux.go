//go:build linux

package memshuffle

import (
	"fmt"

	"golang.org/x/sys/unix"
)

func notDumpable() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("memshuffle: prctl(PR_SET_DUMPABLE): %w", err)
	}
	return nil
}
