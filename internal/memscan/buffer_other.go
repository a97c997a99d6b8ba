//go:build !unix && !windows

package memscan

// mapBuffer fails: without mmap there is no memory the Go runtime will not
// copy, and scanning through the heap would leave copies of what was read.
func mapBuffer(int) ([]byte, error) { return nil, ErrUnsupported }

func unmapBuffer([]byte) error { return nil }
