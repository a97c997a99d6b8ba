//go:build !linux

package osmem

// LockOnFault returns ErrNoOnFault: only Linux locks pages as they are
// first touched (see the Linux version).
func LockOnFault(r *Region) error { return ErrNoOnFault }
