//go:build unix && !linux && !freebsd && !dragonfly

package osmem

import "errors"

var errNoDontDump = errors.New("osmem: dump exclusion not supported on this platform")

// harden does nothing on the remaining Unix systems, and Region.DontDump
// reports false, because none of them can exclude a range of existing
// anonymous memory from core dumps:
//
//   - macOS and iOS have no madvise advice or mapping flag for it.
//   - OpenBSD's MAP_CONCEAL excludes memory from dumps, but it is an mmap
//     flag, chosen when the mapping is made, not advice given afterwards.
//   - NetBSD, Solaris, illumos and AIX have no such advice (on Solaris and
//     illumos, coreadm chooses dump contents for a whole process).
//
// Fork exclusion is not attempted either: OpenBSD and NetBSD have
// minherit(2) with MAP_INHERIT_ZERO, but golang.org/x/sys/unix has no
// wrapper for it, and macOS's minherit has no zeroing mode.
func harden([]byte) error { return errNoDontDump }
