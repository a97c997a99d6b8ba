package store

import "fmt"

// Waiters are the goroutines waiting for a shard's entries: those waiting
// for an entry's return, on a channel of the entry's, and the count of
// writers waiting for each entry, which holds new views back so that
// overlapping readers cannot keep a writer out.
//
// A channel per entry, not one for the shard: each Return closed the
// shard's, so every waiter of the shard woke, took the lock and, most of
// them, went back to sleep; with 16,000 goroutines waiting for busy
// entries, a Rent+Return of another entry of the shard waited 8.4 ms at
// the 99th percentile.
type Waiters struct {
	wake    map[uint64]chan struct{} // by Handle id: closed at the entry's next return, when someone waits
	writers map[uint64]int32         // by Handle id: writers waiting for the entry
}

// Chan returns a channel closed at the next Wake of the entry with Handle
// id id, or WakeAll.
func (w *Waiters) Chan(id uint64) chan struct{} {
	if w.wake == nil {
		w.wake = make(map[uint64]chan struct{})
	}
	c := w.wake[id]
	if c == nil {
		c = make(chan struct{})
		w.wake[id] = c
	}
	return c
}

// Waiting reports whether a goroutine waits for the entry with Handle id
// id: whether it has a channel.
func (w *Waiters) Waiting(id uint64) bool { return w.wake[id] != nil }

// Wake releases every goroutine waiting for the entry with Handle id id.
func (w *Waiters) Wake(id uint64) {
	if len(w.wake) == 0 {
		return
	}
	if c := w.wake[id]; c != nil {
		close(c)
		delete(w.wake, id)
	}
}

// WakeAll releases every goroutine waiting on any Chan.
func (w *Waiters) WakeAll() {
	for id, c := range w.wake {
		close(c)
		delete(w.wake, id)
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
// wake channels kept are still open: each is dropped as it is closed.
func (w *Waiters) Check() error {
	for id, n := range w.writers {
		if n <= 0 {
			return fmt.Errorf("writer count %d for handle id %#x", n, id)
		}
	}
	for id, c := range w.wake {
		select {
		case <-c:
			return fmt.Errorf("wake channel of handle id %#x closed but kept", id)
		default:
		}
	}
	return nil
}
