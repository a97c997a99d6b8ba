//go:build freebsd || dragonfly

package osmem

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// harden keeps b out of core dumps with MADV_NOCORE, which FreeBSD and
// DragonFly honour for anonymous memory.
//
// Fork exclusion is not attempted. FreeBSD 12 added minherit(2) with
// INHERIT_ZERO, the counterpart of Linux's MADV_WIPEONFORK, but
// golang.org/x/sys/unix has neither a Minherit wrapper nor an INHERIT_ZERO
// constant for FreeBSD or DragonFly. A forked child therefore gets a copy of
// the region, as it would of any memory; entries in it stay encrypted at
// rest.
func harden(b []byte) error {
	if err := injected(OpAdvise); err != nil {
		return fmt.Errorf("osmem: madvise: %w", err)
	}
	if err := unix.Madvise(b, unix.MADV_NOCORE); err != nil {
		return fmt.Errorf("osmem: madvise(MADV_NOCORE): %w", err)
	}
	return nil
}
