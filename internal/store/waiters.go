package store

import "fmt"

// Waiters are the goroutines waiting for a shard's entries: those waiting
// for any return, on one channel, and the count of writers waiting for
// each entry, which holds new views back so that overlapping readers
// cannot keep a writer out.
type Waiters struct {
	wake    chan struct{}    // closed at the next return, when someone waits
	writers map[uint64]int32 // by Handle id: writers waiting for the entry
}

// Chan returns a channel closed at the next WakeAll.
func (w *Waiters) Chan() chan struct{} {
	if w.wake == nil {
		w.wake = make(chan struct{})
	}
	return w.wake
}

// WakeAll releases every goroutine waiting on Chan.
func (w *Waiters) WakeAll() {
	if w.wake != nil {
		close(w.wake)
		w.wake = nil
	}
}

// QueueWriter counts a writer waiting for the entry with Handle id id in
// (d = 1) or out (d = -1).
func (w *Waiters) QueueWriter(id uint64, d int32) {
	if w.writers == nil {
		w.writers = make(map[uint64]int32)
	}
	if n := w.writers[id] + d; n > 0 {
		w.writers[id] = n
	} else {
		delete(w.writers, id)
	}
}

// Writers is how many writers wait for the entry with Handle id id.
func (w *Waiters) Writers(id uint64) int32 { return w.writers[id] }

// Check verifies that waiting writers are counted positive and that the
// wake channel, if any, is still open: it is dropped as it is closed.
func (w *Waiters) Check() error {
	for id, n := range w.writers {
		if n <= 0 {
			return fmt.Errorf("writer count %d for handle id %#x", n, id)
		}
	}
	if w.wake != nil {
		select {
		case <-w.wake:
			return fmt.Errorf("wake channel closed but kept")
		default:
		}
	}
	return nil
}
