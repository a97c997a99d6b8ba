//go:build unix && !linux

package osmem

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// lockPastLimit reports whether the process is root, whom these systems do
// not hold to RLIMIT_MEMLOCK.
func lockPastLimit() bool { return unix.Geteuid() == 0 }

// HugePageSize is zero: outside Linux there is no transparent-huge-page
// hint to align for.
const HugePageSize = 0

func adviseHuge([]byte) {}

func adviseSmall([]byte) {}

func mapSecret(int) (*Region, error) {
	return nil, fmt.Errorf("%w: only Linux has memfd_secret", ErrNoSecret)
}
