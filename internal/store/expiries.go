package store

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// Expiries is a shard's record of deadlines, and the only one: slot ->
// Unix nanoseconds, for the entries that have one. Entries leave it when
// they are wiped at their deadline, freed, or their expiry is removed. The
// earliest deadline is cached so that sweeps with nothing due cost nothing.
type Expiries struct {
	at       map[uint32]int64
	earliest int64    // the smallest deadline in at, unless stale
	stale    bool     // the earliest deadline left: recompute on demand
	due      []uint32 // slots DueUntil found due and has not yet handed out
	// sinceLook counts the calls of Paced since DueUntil last looked
	// through the deadlines.
	sinceLook int
	// Ordered, set by tests that replay a sequence of operations, makes
	// Due and DueUntil hand out slots in ascending order instead of the
	// map's, which differs from run to run: the order entries are wiped
	// in is the order their space is freed in, and with it where later
	// entries land.
	Ordered bool
}

// Set gives slot i the deadline d, replacing any it had.
func (e *Expiries) Set(i uint32, d int64) {
	if e.at == nil {
		e.at = make(map[uint32]int64)
	}
	old, had := e.at[i]
	e.at[i] = d
	switch {
	case len(e.at) == 1:
		e.earliest, e.stale = d, false
	case had && old == e.earliest && d > old:
		e.stale = true
	case !e.stale && d < e.earliest:
		e.earliest = d
	}
}

// Clear removes slot i's deadline, if it has one.
func (e *Expiries) Clear(i uint32) {
	d, ok := e.at[i]
	if !ok {
		return
	}
	delete(e.at, i)
	if d == e.earliest {
		e.stale = true
	}
}

// Get returns slot i's deadline.
func (e *Expiries) Get(i uint32) (int64, bool) {
	if len(e.at) == 0 {
		return 0, false
	}
	d, ok := e.at[i]
	return d, ok
}

// Next returns the earliest deadline, and false when there is none.
func (e *Expiries) Next() (int64, bool) {
	if len(e.at) == 0 {
		return 0, false
	}
	if e.stale {
		e.earliest = math.MaxInt64
		for _, d := range e.at {
			e.earliest = min(e.earliest, d)
		}
		e.stale = false
	}
	return e.earliest, true
}

// Due calls fn for every slot whose deadline is not after now, in no
// particular order. fn may Clear the slot it is called for.
func (e *Expiries) Due(now int64, fn func(i uint32)) {
	if d, ok := e.Next(); !ok || now < d {
		return
	}
	if e.Ordered {
		e.dueOrdered(now, fn)
		return
	}
	for i, d := range e.at {
		if d <= now {
			fn(i)
		}
	}
}

// dueOrdered is Due for Ordered.
func (e *Expiries) dueOrdered(now int64, fn func(i uint32)) {
	var due []uint32
	for i, d := range e.at {
		if d <= now {
			due = append(due, i)
		}
	}
	slices.Sort(due)
	for _, i := range due {
		if d, ok := e.at[i]; ok && d <= now {
			fn(i)
		}
	}
}

// DueUntil is Due that stops as soon as fn reports false, for a caller
// that goes on in a later call. It reports whether it called fn for every
// slot that was due.
//
// The slots found due are queued, and later calls take from the queue
// before they look at the deadlines again: each look is a pass over every
// deadline (and over the map's buckets, which do not shrink as deadlines
// leave), so a call per few hundred slots, each looking afresh, made
// wiping n entries that expired together cost n²/512 map visits, seconds
// for 200,000 entries.
func (e *Expiries) DueUntil(now int64, fn func(i uint32) bool) bool {
	if len(e.due) == 0 {
		e.sinceLook = 0
		if d, ok := e.Next(); !ok || now < d {
			return true
		}
		if afterDueScan != nil {
			afterDueScan()
		}
		for i, d := range e.at {
			if d <= now {
				e.due = append(e.due, i)
			}
		}
		if e.Ordered { // handed out from the end
			slices.SortFunc(e.due, func(a, b uint32) int { return cmp.Compare(b, a) })
		}
	}
	for len(e.due) > 0 {
		i := e.due[len(e.due)-1]
		// Cleared or given a later deadline since it was queued.
		if d, ok := e.at[i]; ok && d <= now && !fn(i) {
			return false
		}
		e.due = e.due[:len(e.due)-1]
	}
	if cap(e.due) > 1<<12 {
		e.due = nil
	}
	return true
}

// Paced reports whether a caller that sweeps a few entries with DueUntil
// at each allocation should sweep at this one: while slots found due are
// queued, and otherwise once Len()/8 allocations have passed since
// DueUntil last looked through the deadlines. A look is a pass over every
// deadline (two, when the earliest has gone), so looking at every
// allocation would cost a pass each; paced, the passes cost at most 16 map
// visits per allocation, and entries that expire wait for their wipe at
// most about Len()/8 allocations.
func (e *Expiries) Paced() bool {
	if len(e.due) > 0 {
		return true
	}
	e.sinceLook++
	return e.sinceLook >= len(e.at)/8
}

// afterDueScan, when set by a test, runs each time DueUntil looks through
// every deadline.
var afterDueScan func()

// Len is the number of deadlines.
func (e *Expiries) Len() int { return len(e.at) }

// Reset removes every deadline.
func (e *Expiries) Reset() { *e = Expiries{Ordered: e.Ordered} }

// check verifies that every deadline belongs to a slot of t that is live
// or borrowed (a wiped or freed one has left the index) and that the
// cached earliest deadline is the earliest. A slot has at most one: the
// index is keyed by slot.
func (e *Expiries) check(t *Slots) error {
	least := int64(math.MaxInt64)
	for i, d := range e.at {
		if i >= t.Len() {
			return fmt.Errorf("deadline for slot %d of %d", i, t.Len())
		}
		switch st := t.At(i).State(); st {
		case StateLive, StateRented, StateViewed:
		default:
			return fmt.Errorf("deadline for slot %d in state %d", i, st)
		}
		least = min(least, d)
	}
	if len(e.at) > 0 && !e.stale && e.earliest != least {
		return fmt.Errorf("earliest deadline cached as %d, is %d", e.earliest, least)
	}
	return nil
}
