package memshuffle

import (
	"fmt"
	"slices"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// check verifies every invariant of the Shuffler, in the spirit of bbolt's
// Tx.Check: each shard's engine checks itself (slots, arenas, the
// free-space index, the zero-byte invariant, the locked and dumpable
// accounting, deadlines and waiters, see store.Shard.Check), and on top of
// that no two resting entries share a counter value, rotations are where
// they say, rents are recorded, and the regions that are not arenas are
// counted. It holds every shard's lock while it runs, and reads all arena
// memory, so it is meant for tests; every test Shuffler runs it at cleanup.
func (s *Shuffler) check() error {
	if !s.made() {
		return nil
	}
	s.lockAll()
	defer s.unlockAll()
	var runs []ctrRun
	for i := range s.shards {
		sh := &s.shards[i]
		r, err := sh.check()
		if err != nil {
			return fmt.Errorf("shard %d: %w", i, err)
		}
		runs = append(runs, r...)
	}
	if err := s.checkCounterRuns(runs); err != nil {
		return err
	}
	return s.checkAux()
}

// ctrRun is the run of counter values one resting entry is encrypted with.
type ctrRun struct{ lo, hi uint64 }

func (sh *shard) check() ([]ctrRun, error) {
	if sh.closed {
		return nil, sh.checkClosed()
	}
	if err := sh.Check(); err != nil {
		return nil, err
	}
	counted := 0
	for _, f := range sh.flight.slots {
		// Rented from Alloc, Rent and View; rented or viewed to a Return.
		i := f.slot
		if i >= sh.Slots.Len() || (sh.Slots.At(i).State() != store.StateRented && sh.Slots.At(i).State() != store.StateViewed) {
			return nil, fmt.Errorf("slot %d in flight but not borrowed", i)
		}
		if f.id != makeHandle(sh.s.id, sh.index, i, sh.Slots.At(i).Gen()).id {
			return nil, fmt.Errorf("slot %d in flight under another Handle", i)
		}
		if f.counted {
			counted++
		}
	}
	if counted > sh.Counts.Rented() {
		return nil, fmt.Errorf("%d flights count their entries as rented, %d rented", counted, sh.Counts.Rented())
	}
	if sh.flight.draining < 0 {
		return nil, fmt.Errorf("%d drains", sh.flight.draining)
	}
	borrowed := make(map[uint32]bool)
	var runs []ctrRun
	for i := range sh.Slots.Len() {
		sl := sh.Slots.At(i)
		switch sl.State() {
		case store.StateRented, store.StateViewed:
			// A flight that made its entry rented has not tracked it yet,
			// nor will an Alloc's or a rotation's.
			if k := sh.flight.find(i); k < 0 || !sh.flight.slots[k].counted {
				borrowed[i] = true
			}
			continue
		case store.StateLive:
		default:
			continue
		}
		// A shard that finished rotating, and the part of a rotating shard
		// its batches passed, hold nothing under the old key.
		if (sh.rot.prev == nil || i < sh.rot.cursor) && sl.Ctr() < sh.rot.base {
			return nil, fmt.Errorf("slot %d at counter %d, below its shard's rotation base %d", i, sl.Ctr(), sh.rot.base)
		}
		hi := sl.Ctr() + sh.ciph.Counters(int(sl.Size))
		if hi > sh.s.ctrs.Next() {
			return nil, fmt.Errorf("slot %d uses counter values not yet handed out", i)
		}
		runs = append(runs, ctrRun{sl.Ctr(), hi})
	}
	if err := sh.checkRents(borrowed); err != nil {
		return nil, err
	}
	return runs, nil
}

// checkClosed: a closed shard holds nothing, unless Purge closed it, which
// leaves its arenas mapped, wiped.
func (sh *shard) checkClosed() error {
	if sh.purged {
		if sh.pins > 0 || sh.anyRented() {
			// A Borrow function or fill may write after Purge; it wipes
			// what it wrote when it ends (endPinned). A slice from Rent
			// may write too, and what it writes stays until Close.
			return nil
		}
		for ai, a := range sh.Arenas.List() {
			if a != nil && !store.AllZero(a.Mem) {
				return fmt.Errorf("arena %d not wiped by Purge", ai)
			}
		}
		return nil
	}
	if sh.backup != nil {
		return fmt.Errorf("closed but holds a backup region")
	}
	return sh.CheckEmpty()
}

// anyRented reports whether a slot of the shard is rented. After Purge it
// says whether one was when Purge ran: every call but Close answers
// ErrClosed from then on, so no Return changes a slot.
func (sh *shard) anyRented() bool {
	for i := range sh.Slots.Len() {
		if sh.Slots.At(i).State() == store.StateRented {
			return true
		}
	}
	return false
}

// checkNoneDue verifies what a sweep of expired entries (Shuffle, a
// background cycle) leaves: no live entry whose deadline is not after now.
// Borrowed entries wait for their return.
func (s *Shuffler) checkNoneDue(now int64) error {
	s.lockAll()
	defer s.unlockAll()
	for k := range s.shards {
		sh := &s.shards[k]
		var err error
		sh.Expiries.Each(func(i uint32, d int64) {
			if err == nil && d <= now && sh.Slots.At(i).State() == store.StateLive {
				err = fmt.Errorf("shard %d: slot %d is live %d ns after its deadline", k, i, now-d)
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// checkRents: with rent tracking, exactly the borrowed entries have a
// record.
func (sh *shard) checkRents(borrowed map[uint32]bool) error {
	if sh.s.cfg.trackAfter <= 0 {
		if len(sh.rents) != 0 {
			return fmt.Errorf("%d rent records without rent tracking", len(sh.rents))
		}
		return nil
	}
	for h := range sh.rents {
		i := h.slot()
		if h.shard() != sh.index || i >= sh.Slots.Len() || !borrowed[i] || sh.Slots.At(i).Gen() != h.gen() {
			return fmt.Errorf("rent record for %v, which is not borrowed", h)
		}
	}
	if len(sh.rents) != len(borrowed) {
		return fmt.Errorf("%d rent records for %d borrowed entries", len(sh.rents), len(borrowed))
	}
	return nil
}

// checkCounterRuns: no two resting entries share a counter value, across
// shards.
func (s *Shuffler) checkCounterRuns(runs []ctrRun) error {
	slices.SortFunc(runs, func(x, y ctrRun) int {
		switch {
		case x.lo < y.lo:
			return -1
		case x.lo > y.lo:
			return 1
		}
		return 0
	})
	for i := 1; i < len(runs); i++ {
		if runs[i].lo < runs[i-1].hi {
			return fmt.Errorf("counter runs overlap: [%d,%d) and [%d,%d)", runs[i-1].lo, runs[i-1].hi, runs[i].lo, runs[i].hi)
		}
	}
	return nil
}

// checkAuxHook, when set by a test, runs in checkAux between its pass over
// the idle regions and its comparison, where Close or GiveBackIdle may
// take those regions away.
var checkAuxHook func()

// checkAux: the regions that are not arenas and that the Aux holds idle
// are counted; a background cycle may hold more of its own (its spares,
// regions it released), so the count may be larger, never smaller. Idle
// regions hold no byte of any entry. The shards' AEAD backups are plain
// memory the Aux does not count (see mapBackup), and hold nothing between
// uses.
func (s *Shuffler) checkAux() error {
	var locked, unlocked int64
	for i := range s.shards {
		sh := &s.shards[i]
		if r := sh.backup; r != nil && (r.Locked || r.LockErr != nil || !store.AllZero(r.Data)) {
			return fmt.Errorf("shard %d: backup of %d bytes locked (%v, %v) or holding bytes between uses", i, len(r.Data), r.Locked, r.LockErr)
		}
	}
	var stale error
	// The counts are read with the idle regions held (see EachIdle).
	al, au := s.aux.EachIdle(func(r *osmem.Region) {
		locked += store.LockedLen(r)
		unlocked += store.UnlockedLen(r)
		if !store.AllZero(r.Data) && stale == nil {
			stale = fmt.Errorf("an idle region of %d bytes has stale bytes", len(r.Data))
		}
	})
	if stale != nil {
		return stale
	}
	if checkAuxHook != nil {
		checkAuxHook()
	}
	if al < locked || au < unlocked || al < 0 || au < 0 {
		return fmt.Errorf("regions that are not arenas: %d locked and %d unlocked counted, shards hold %d and %d", al, au, locked, unlocked)
	}
	return nil
}
