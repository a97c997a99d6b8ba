//go:build !unix && !windows

package osmem

import "errors"

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
	n = (n + 4095) &^ 4095
	b := make([]byte, n)
	r := &Region{Data: b}
	if f.StrictLock {
		return nil, ErrLock
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

func lock([]byte) error { return ErrLock }
