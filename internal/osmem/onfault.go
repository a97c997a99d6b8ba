package osmem

import "errors"

// ErrNoOnFault is returned by LockOnFault where the system cannot lock
// pages as they are first touched; Relock after touching them locks them
// instead.
var ErrNoOnFault = errors.New("osmem: no lock on fault")
