package store

// None reports whether no entry has a deadline: then no expiry needs a
// look at the clock or the map. It inlines into the paths of Rent and
// Return, where Get, with its map lookup, would not.
func (e *Expiries) None() bool { return len(e.at) == 0 }
