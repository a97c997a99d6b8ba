//go:build !unix && !windows

package osmem

import (
	"errors"
	"fmt"
)

// HugePageSize is zero: the Go heap's pages are the runtime's to choose.
const HugePageSize = 0

// PageSize reports the allocation granule of the fallback.
func PageSize() int { return 4096 }

// Map on platforms without a memory layer of their own falls back to a
// Go-heap allocation. The Go collector does not move heap objects, so the
// Region stays put, but it is neither guarded, locked nor kept out of dumps:
// Region reports that, and entries stay encrypted at rest regardless.
func Map(n int, f Flags) (*Region, error) {
	if n <= 0 {
		return nil, errors.New("osmem: invalid size")
	}
	if err := injected(OpMap); err != nil {
		return nil, err
	}
	if f.Secret {
		return nil, ErrNoSecret
	}
	if f.StrictLock {
		return nil, errNoLock
	}
	n = (n + 4095) &^ 4095
	r := &Region{Data: make([]byte, n)}
	if f.Lock {
		// A refusal, as the other platforms record one, so that callers
		// count it the same way.
		r.LockErr = errNoLock
	}
	return r, nil
}

// Unmap drops the reference; the caller has wiped the contents.
func Unmap(r *Region) error {
	if r != nil {
		r.Data = nil
	}
	return nil
}

// LockLimit is -1: the fallback locks nothing.
func LockLimit() int64 { return -1 }

// BindingLockLimit is LockLimit.
func BindingLockLimit() int64 { return -1 }

var errNoLock = fmt.Errorf("%w: the platform has no memory locking", ErrLock)

func lock([]byte) error { return errNoLock }
