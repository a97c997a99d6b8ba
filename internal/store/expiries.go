package store

import (
	"cmp"
	"fmt"
	"slices"
)

// Expiries is a shard's record of deadlines, and the only one: slot ->
// Unix nanoseconds, for the entries that have one. Entries leave it when
// they are wiped at their deadline, freed, or their expiry is removed.
//
// The deadlines are a binary min-heap ordered by deadline, then slot, with
// each slot's place in it kept by slot: finding the earliest costs
// nothing, and setting, clearing or taking one costs O(log n), whatever
// the others are. (A map with a cached earliest deadline had to look
// through every deadline whenever the earliest left: with a million
// deadlines, a background step or an Alloc held the shard lock for tens
// of milliseconds.) The order is the same
// from run to run, which tests that replay a sequence of operations need:
// the order entries are wiped in is the order their space is freed in.
//
// A deadline that has passed while its entry is rented or viewed cannot be
// acted on until the borrow ends: DueUntil moves it out of the heap into
// held, where Get still finds it (the return that ends the borrow wipes
// the entry) but Next no longer does, so that it does not keep every later
// sweep looking at it.
type Expiries struct {
	// heap[p>>chunkShift][p&(chunkSlots-1)] is the heap's deadline p, of
	// n. The heap and pos are in chunks that never move, as the slot
	// table is, so that no Set copies all of either under the shard lock
	// to grow it.
	heap [][]deadline
	n    int
	// pos[i>>chunkShift][i&(chunkSlots-1)] is 1 + slot i's index in the
	// heap, 0 if it is not there. A chunk is made when a slot of its
	// range first gets a deadline and kept until Reset: 4 bytes a slot
	// at most.
	pos  [][]uint32
	held map[uint32]int64 // due slots a borrow holds
}

type deadline struct {
	at   int64
	slot uint32
}

func (a deadline) before(b deadline) bool {
	return a.at < b.at || a.at == b.at && a.slot < b.slot
}

// at returns the heap's deadline p.
func (e *Expiries) at(p int) *deadline {
	return &(*[chunkSlots]deadline)(e.heap[p>>chunkShift])[p&(chunkSlots-1)]
}

// put stores x as the heap's deadline p and records its place.
func (e *Expiries) put(p int, x deadline) {
	*e.at(p) = x
	e.pos[x.slot>>chunkShift][x.slot&(chunkSlots-1)] = uint32(p) + 1
}

// place returns slot i's index in the heap, or -1.
func (e *Expiries) place(i uint32) int {
	c := int(i >> chunkShift)
	if c >= len(e.pos) || e.pos[c] == nil {
		return -1
	}
	return int(e.pos[c][i&(chunkSlots-1)]) - 1
}

// Set gives slot i the deadline d, replacing any it had.
func (e *Expiries) Set(i uint32, d int64) {
	delete(e.held, i)
	if p := e.place(i); p >= 0 {
		e.at(p).at = d
		e.fix(p)
		return
	}
	c := int(i >> chunkShift)
	if c >= len(e.pos) {
		e.pos = append(e.pos, make([][]uint32, c+1-len(e.pos))...)
	}
	if e.pos[c] == nil {
		e.pos[c] = make([]uint32, chunkSlots)
	}
	if e.n == len(e.heap)*chunkSlots {
		e.heap = append(e.heap, make([]deadline, chunkSlots))
	}
	e.n++
	e.put(e.n-1, deadline{d, i})
	e.up(e.n - 1)
}

// Clear removes slot i's deadline, if it has one.
func (e *Expiries) Clear(i uint32) {
	p := e.place(i)
	if p < 0 {
		delete(e.held, i)
		return
	}
	e.pos[i>>chunkShift][i&(chunkSlots-1)] = 0
	e.n--
	if p != e.n {
		e.put(p, *e.at(e.n))
		e.fix(p)
	}
	// One spare chunk stays, so that a heap whose size hovers at a
	// chunk's edge does not make and drop one every time.
	if k := len(e.heap); k >= 2 && e.n <= (k-2)*chunkSlots {
		e.heap[k-1] = nil
		e.heap = e.heap[:k-1]
	}
}

// Get returns slot i's deadline.
func (e *Expiries) Get(i uint32) (int64, bool) {
	if p := e.place(i); p >= 0 {
		return e.at(p).at, true
	}
	d, ok := e.held[i]
	return d, ok
}

// Held reports whether slot i's deadline is held: it was found due while
// its entry was borrowed, and stays due whatever the clock says later (a
// wall clock can step back), so that the return that ends the borrow
// wipes the entry.
func (e *Expiries) Held(i uint32) bool {
	_, ok := e.held[i]
	return ok
}

// Hold moves slot i's deadline, found due while its entry is borrowed,
// out of the heap and holds it (see Held). A slot with no deadline, or a
// held one, is left as it is.
func (e *Expiries) Hold(i uint32) {
	p := e.place(i)
	if p < 0 {
		return
	}
	d := e.at(p).at
	e.Clear(i)
	if e.held == nil {
		e.held = make(map[uint32]int64)
	}
	e.held[i] = d
}

// Each calls fn for every deadline, held ones included, in no particular
// order, changing nothing: for checks.
func (e *Expiries) Each(fn func(i uint32, d int64)) {
	for p := range e.n {
		fn(e.at(p).slot, e.at(p).at)
	}
	for i, d := range e.held {
		fn(i, d)
	}
}

// Next returns the earliest deadline not held, and false when there is
// none.
func (e *Expiries) Next() (int64, bool) {
	if e.n == 0 {
		return 0, false
	}
	return e.at(0).at, true
}

// DueBy reports whether a deadline not held is at or before now: whether
// DueUntil would call its function.
func (e *Expiries) DueBy(now int64) bool { return e.n > 0 && e.at(0).at <= now }

// DueUntil calls fn for the slots whose deadline is not after now, earliest
// first, and stops as soon as fn reports false, for a caller that goes on
// in a later call. It reports whether it called fn for every slot that was
// due. fn is to Clear the slot it is called for (its entry wiped); a slot
// fn leaves with its deadline, which is one whose entry is borrowed, is
// held, and later calls pass it over.
func (e *Expiries) DueUntil(now int64, fn func(i uint32) bool) bool {
	for e.DueBy(now) {
		i := e.at(0).slot
		if !fn(i) {
			return false
		}
		if p := e.place(i); p >= 0 && e.at(p).at <= now {
			e.Hold(i)
		}
	}
	return true
}

// Len is the number of deadlines, held ones included.
func (e *Expiries) Len() int { return e.n + len(e.held) }

// Reset removes every deadline.
func (e *Expiries) Reset() { *e = Expiries{} }

// up moves the deadline at p towards the root while it is earlier than its
// parent.
func (e *Expiries) up(p int) {
	x := *e.at(p)
	for p > 0 {
		q := (p - 1) / 2
		if !x.before(*e.at(q)) {
			break
		}
		e.put(p, *e.at(q))
		p = q
	}
	e.put(p, x)
}

// down moves the deadline at p towards the leaves while a child is
// earlier.
func (e *Expiries) down(p int) {
	x := *e.at(p)
	for {
		c := 2*p + 1
		if c >= e.n {
			break
		}
		if c+1 < e.n && e.at(c+1).before(*e.at(c)) {
			c++
		}
		if !e.at(c).before(x) {
			break
		}
		e.put(p, *e.at(c))
		p = c
	}
	e.put(p, x)
}

// fix restores the heap's order after the deadline at p changed.
func (e *Expiries) fix(p int) {
	if p > 0 && e.at(p).before(*e.at((p - 1) / 2)) {
		e.up(p)
	} else {
		e.down(p)
	}
}

// check verifies that every deadline belongs to a slot of t that is live
// or borrowed, and a held one to a borrowed slot (a wiped or freed one has
// left the index); that no slot is both in the heap and held; that the
// heap is ordered and its places recorded; and that no other slot has a
// place.
func (e *Expiries) check(t *Slots) error {
	for p := range e.n {
		x := e.at(p)
		if x.slot >= t.Len() {
			return fmt.Errorf("deadline for slot %d of %d", x.slot, t.Len())
		}
		switch st := t.At(x.slot).State(); st {
		case StateLive, StateRented, StateViewed:
		default:
			return fmt.Errorf("deadline for slot %d in state %d", x.slot, st)
		}
	}
	if err := e.checkHeap(); err != nil {
		return err
	}
	held := make([]uint32, 0, len(e.held))
	for i := range e.held {
		held = append(held, i)
	}
	slices.SortFunc(held, cmp.Compare)
	for _, i := range held {
		if i >= t.Len() {
			return fmt.Errorf("held deadline for slot %d of %d", i, t.Len())
		}
		if st := t.At(i).State(); st != StateRented && st != StateViewed {
			return fmt.Errorf("held deadline for slot %d in state %d, not borrowed", i, st)
		}
	}
	return nil
}

// checkHeap verifies the heap's order, size and recorded places, and that
// no slot is both in it and held.
func (e *Expiries) checkHeap() error {
	if e.n > len(e.heap)*chunkSlots || len(e.heap) > e.n/chunkSlots+2 {
		return fmt.Errorf("%d deadlines in %d chunks", e.n, len(e.heap))
	}
	for p := range e.n {
		x := *e.at(p)
		if e.place(x.slot) != p {
			return fmt.Errorf("deadline of slot %d at %d in the heap, recorded at %d", x.slot, p, e.place(x.slot))
		}
		if p > 0 && x.before(*e.at((p - 1) / 2)) {
			return fmt.Errorf("deadline of slot %d at %d in the heap is earlier than its parent's", x.slot, p)
		}
		if _, ok := e.held[x.slot]; ok {
			return fmt.Errorf("slot %d both held and in the heap", x.slot)
		}
	}
	placed := 0
	for _, c := range e.pos {
		for _, p := range c {
			if p != 0 {
				placed++
			}
		}
	}
	if placed != e.n {
		return fmt.Errorf("%d slots have a place in a heap of %d deadlines", placed, e.n)
	}
	return nil
}
