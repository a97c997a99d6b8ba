//go:build unix && !linux

package osmem

import (
	"errors"
	"fmt"
)

var errNoDontDump = errors.New("osmem: dump exclusion not supported on this platform")

// harden has no portable way to exclude memory from dumps outside Linux.
func harden(b []byte) error { return errNoDontDump }

const hugePageSize = 0

func adviseHuge([]byte) {}

func mapSecret([]byte) error {
	return fmt.Errorf("%w: only Linux has memfd_secret", ErrNoSecret)
}
