//go:build !linux

package memshuffle

import "time"

// schedWindow knows nothing of run queues outside Linux: every pause is
// left unattributed.
type schedWindow struct{}

func (w *schedWindow) mark() {}

func (w *schedWindow) waitedSince() (q time.Duration, moved, ok bool) { return 0, false, false }
