//go:build linux

package osmem

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// harden keeps b out of core dumps and makes a forked child see zeros
// instead of the parent's secrets.
func harden(b []byte) error {
	if err := injected(OpAdvise); err != nil {
		return fmt.Errorf("osmem: madvise: %w", err)
	}
	if err := unix.Madvise(b, unix.MADV_DONTDUMP); err != nil {
		return fmt.Errorf("osmem: madvise(MADV_DONTDUMP): %w", err)
	}
	// MADV_WIPEONFORK exists since Linux 4.14; older kernels leave fork
	// exclusion to the caller, which is not worth failing the mapping for.
	_ = unix.Madvise(b, unix.MADV_WIPEONFORK)
	return nil
}

// hugePageSize is the transparent huge page size Map aligns large regions
// to.
const hugePageSize = 2 << 20

// adviseHuge asks for transparent huge pages; where they are disabled the
// region simply keeps small pages.
func adviseHuge(b []byte) { _ = unix.Madvise(b, unix.MADV_HUGEPAGE) }
