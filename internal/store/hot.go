package store

// None reports whether no entry has a deadline: then no expiry needs a
// look at the clock or the index. It inlines into the paths of Rent and
// Return, where Get would not.
func (e *Expiries) None() bool { return e.n == 0 && len(e.held) == 0 }

// NoWriters reports whether no writer waits for any entry: then a view
// needs no lookup of its entry's writers in the map. It inlines into the
// path of View.
func (w *Waiters) NoWriters() bool { return len(w.writers) == 0 }
