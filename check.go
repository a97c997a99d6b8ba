package memshuffle

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// check verifies every invariant of the engine, in the spirit of bbolt's
// Tx.Check: the slot table, the arenas and the free-space index, that every
// byte outside an entry is zero, that no two resting entries share a
// counter value, the locked and dumpable accounting, waiters and rents. It
// holds every shard's lock while it runs, and reads all arena memory, so it
// is meant for tests; every test Shuffler runs it at cleanup.
func (s *Shuffler) check() error {
	if s == nil || len(s.shards) == 0 {
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

// span is a stretch [off, end) of an arena.
type span struct{ off, end int }

// shardView is what one pass over a shard's slots found, for the checks
// that compare it with the shard's records.
type shardView struct {
	live, rented, viewed int
	liveBytes, bigBytes  int64
	spans                map[uint32][]span // entries, by arena
	borrowed             map[uint32]bool   // rented or viewed slots
	runs                 []ctrRun
}

func (sh *shard) check() ([]ctrRun, error) {
	if sh.closed {
		return nil, sh.checkClosed()
	}
	onFree, err := sh.checkFreeList()
	if err != nil {
		return nil, err
	}
	v, err := sh.checkSlots(onFree)
	if err != nil {
		return nil, err
	}
	if v.live != sh.live || v.rented != sh.rented || v.viewed != sh.viewed || v.liveBytes != sh.liveBytes || v.bigBytes != sh.bigBytes {
		return nil, fmt.Errorf("counted live=%d rented=%d viewed=%d bytes=%d big=%d, recorded %d %d %d %d %d",
			v.live, v.rented, v.viewed, v.liveBytes, v.bigBytes, sh.live, sh.rented, sh.viewed, sh.liveBytes, sh.bigBytes)
	}
	if err := sh.checkArenas(v); err != nil {
		return nil, err
	}
	if err := sh.checkWaiters(v); err != nil {
		return nil, err
	}
	return v.runs, nil
}

// checkClosed: a closed shard holds nothing, unless Purge closed it, which
// leaves its arenas mapped, wiped.
func (sh *shard) checkClosed() error {
	if sh.purged {
		for ai, a := range sh.arenas {
			if a != nil && !allZero(a.mem) {
				return fmt.Errorf("arena %d not wiped by Purge", ai)
			}
		}
		return nil
	}
	if len(sh.arenas) != 0 || sh.nslots != 0 || sh.live != 0 || sh.free.Len() != 0 || sh.backup != nil || sh.spare != nil || len(sh.exp.at) != 0 {
		return fmt.Errorf("closed but holds state")
	}
	return nil
}

// checkFreeList: the slot free list holds only free slots, once each, and
// ends.
func (sh *shard) checkFreeList() (map[uint32]bool, error) {
	if uint64(sh.nslots) > uint64(len(sh.chunks))*chunkSlots {
		return nil, fmt.Errorf("%d slots in %d chunks", sh.nslots, len(sh.chunks))
	}
	onFree := make(map[uint32]bool)
	for f := sh.freeHead; f != 0; {
		i := f - 1
		if i >= sh.nslots || onFree[i] {
			return nil, fmt.Errorf("free list broken at %d", i)
		}
		onFree[i] = true
		sl := sh.slot(i)
		if sl.state() != stateFree || sl.gen() == 0 {
			return nil, fmt.Errorf("slot %d on free list with meta %#x", i, sl.meta)
		}
		f = sl.off
	}
	return onFree, nil
}

// checkSlots walks the slot table: states, tombstones, the expiry flag
// against the expiry map, where each entry is and its alignment, viewer
// counts, and counter runs not yet handed out.
func (sh *shard) checkSlots(onFree map[uint32]bool) (*shardView, error) {
	v := &shardView{spans: make(map[uint32][]span), borrowed: make(map[uint32]bool)}
	for i := range sh.nslots {
		sl := sh.slot(i)
		switch sl.state() {
		case stateFree:
			if !onFree[i] && sl.gen() != 0 {
				return nil, fmt.Errorf("free slot %d (gen %d) is not on the free list", i, sl.gen())
			}
			continue
		case stateLive, stateRented, stateViewed:
		case stateExpired:
			if _, ok := sh.exp.get(i); ok || onFree[i] || sl.gen() == 0 || sl.size != 0 || sl.ctr != 0 || sl.off != 0 || sl.arena != 0 {
				return nil, fmt.Errorf("bad tombstone %d: %+v", i, *sl)
			}
			continue
		default:
			return nil, fmt.Errorf("slot %d has state %d", i, sl.state())
		}
		if onFree[i] {
			return nil, fmt.Errorf("live slot %d on the free list", i)
		}
		v.live++
		v.liveBytes += int64(sl.size)
		if sh.oversize(int(sl.size)+sh.ov, sl.align()) {
			v.bigBytes += int64(sl.size)
		}
		if int(sl.arena) >= len(sh.arenas) || sh.arenas[sl.arena] == nil {
			return nil, fmt.Errorf("slot %d in missing arena %d", i, sl.arena)
		}
		a := sh.arenas[sl.arena]
		end := int(sl.off) + int(sl.size) + sh.ov
		if sl.size == 0 || end > a.used || a.used > len(a.mem) {
			return nil, fmt.Errorf("slot %d [%d,%d) outside arena used %d/%d", i, sl.off, end, a.used, len(a.mem))
		}
		if addr := uintptr(unsafe.Pointer(&a.mem[sl.off])); addr%uintptr(sl.align()) != 0 {
			return nil, fmt.Errorf("slot %d at %#x not aligned to %d", i, addr, sl.align())
		}
		v.spans[sl.arena] = append(v.spans[sl.arena], span{int(sl.off), end})
		if sl.state() == stateViewed && sl.ctr == 0 {
			return nil, fmt.Errorf("slot %d viewed by nobody", i)
		}
		switch sl.state() {
		case stateRented:
			v.rented++
		case stateViewed:
			v.viewed++
		}
		if sl.state() != stateLive {
			v.borrowed[i] = true
			continue
		}
		// A shard that finished rotating, and the part of a rotating shard
		// its batches passed, hold nothing under the old key.
		if (sh.rot.prev == nil || i < sh.rot.cursor) && sl.ctr < sh.rot.base {
			return nil, fmt.Errorf("slot %d at counter %d, below its shard's rotation base %d", i, sl.ctr, sh.rot.base)
		}
		hi := sl.ctr + sh.ciph.Counters(int(sl.size))
		if hi > sh.s.ctrs.Next() {
			return nil, fmt.Errorf("slot %d uses counter values not yet handed out", i)
		}
		v.runs = append(v.runs, ctrRun{sl.ctr, hi})
	}
	if err := sh.checkExpiries(); err != nil {
		return nil, err
	}
	return v, nil
}

// checkExpiries: every deadline belongs to an entry that is live or
// borrowed (a wiped or freed one has left the index), no slot has more
// than one (the index is keyed by slot), and the cached earliest deadline
// is the earliest.
func (sh *shard) checkExpiries() error {
	least := int64(math.MaxInt64)
	for i, d := range sh.exp.at {
		if i >= sh.nslots {
			return fmt.Errorf("deadline for slot %d of %d", i, sh.nslots)
		}
		switch st := sh.slot(i).state(); st {
		case stateLive, stateRented, stateViewed:
		default:
			return fmt.Errorf("deadline for slot %d in state %d", i, st)
		}
		least = min(least, d)
	}
	if len(sh.exp.at) > 0 && !sh.exp.stale && sh.exp.earliest != least {
		return fmt.Errorf("earliest deadline cached as %d, is %d", sh.exp.earliest, least)
	}
	return nil
}

// checkNoneDue verifies what a sweep of expired entries (Shuffle, a
// background cycle) leaves: no live entry whose deadline is not after now.
// Borrowed entries wait for their return.
func (s *Shuffler) checkNoneDue(now int64) error {
	s.lockAll()
	defer s.unlockAll()
	for k := range s.shards {
		sh := &s.shards[k]
		for i, d := range sh.exp.at {
			if d <= now && sh.slot(i).state() == stateLive {
				return fmt.Errorf("shard %d: slot %d is live %d ns after its deadline", k, i, now-d)
			}
		}
	}
	return nil
}

// checkArenas: arena records, entry counts, the zero-byte invariant (no
// byte outside an entry holds anything), every byte below an arena's top
// in exactly one entry or free extent, and the mapped, locked, unlocked and
// dumpable counts.
func (sh *shard) checkArenas(v *shardView) error {
	if err := sh.free.Check(); err != nil {
		return err
	}
	holes := make(map[uint32][]span)
	var bad error
	sh.free.Each(func(ai, off, n uint32) {
		if int(ai) >= len(sh.arenas) || sh.arenas[ai] == nil || sh.arenas[ai].dedicated {
			bad = fmt.Errorf("free space in missing or dedicated arena %d", ai)
			return
		}
		holes[ai] = append(holes[ai], span{int(off), int(off + n)})
	})
	if bad != nil {
		return bad
	}
	var mapped, locked, unlocked, dumpable int64
	for ai, a := range sh.arenas {
		if a == nil {
			continue
		}
		if a.index != uint32(ai) {
			return fmt.Errorf("arena %d records index %d", ai, a.index)
		}
		mapped += int64(len(a.mem))
		locked += lockedLen(a.reg)
		unlocked += unlockedLen(a.reg)
		if !a.reg.DontDump {
			dumpable += int64(len(a.mem))
		}
		sp := v.spans[uint32(ai)]
		bytes := 0
		for _, e := range sp {
			bytes += e.end - e.off
		}
		if a.live != len(sp) || a.bytes != bytes {
			return fmt.Errorf("arena %d counts %d entries of %d bytes, holds %d of %d", ai, a.live, a.bytes, len(sp), bytes)
		}
		if a.live == 0 && a != sh.cur && !a.unmapFailed {
			return fmt.Errorf("arena %d is empty but still mapped", ai)
		}
		if a.top > len(a.mem) || a.used > len(a.mem) || (a != sh.cur && !a.dedicated && a.top != len(a.mem)) {
			return fmt.Errorf("arena %d top %d used %d of %d", ai, a.top, a.used, len(a.mem))
		}
		// Entries must not overlap, and every byte outside them must be
		// zero: no ciphertext or plaintext is left where an entry was.
		slices.SortFunc(sp, func(x, y span) int { return x.off - y.off })
		pos := 0
		for _, e := range sp {
			if e.off < pos {
				return fmt.Errorf("arena %d entries overlap at %d", ai, e.off)
			}
			if !allZero(a.mem[pos:e.off]) {
				return fmt.Errorf("arena %d has stale bytes in [%d,%d)", ai, pos, e.off)
			}
			pos = e.end
		}
		if !allZero(a.mem[pos:]) {
			return fmt.Errorf("arena %d has stale bytes after %d", ai, pos)
		}
		if a.dedicated {
			continue
		}
		// Every byte below top is in exactly one entry or one free extent:
		// freed space is never lost to the index.
		all := append(slices.Clone(sp), holes[uint32(ai)]...)
		slices.SortFunc(all, func(x, y span) int { return x.off - y.off })
		pos = 0
		for _, e := range all {
			if e.off != pos {
				return fmt.Errorf("arena %d: [%d,%d) is neither an entry nor free space", ai, pos, e.off)
			}
			pos = e.end
		}
		if pos != a.top {
			return fmt.Errorf("arena %d: entries and free space end at %d, top %d", ai, pos, a.top)
		}
	}
	if mapped != sh.mapped || locked != sh.lockedBytes || unlocked != sh.unlocked || dumpable != sh.dumpable {
		return fmt.Errorf("mapped %d locked %d unlocked %d dumpable %d, recorded %d %d %d %d",
			mapped, locked, unlocked, dumpable, sh.mapped, sh.lockedBytes, sh.unlocked, sh.dumpable)
	}
	return nil
}

// checkWaiters: waiting writers are counted positive; the wake channel, if
// any, is still open (it is dropped as it is closed); with rent tracking,
// exactly the borrowed entries have a record.
func (sh *shard) checkWaiters(v *shardView) error {
	for id, n := range sh.writers {
		if n <= 0 {
			return fmt.Errorf("writer count %d for handle id %#x", n, id)
		}
	}
	if sh.wake != nil {
		select {
		case <-sh.wake:
			return fmt.Errorf("wake channel closed but kept")
		default:
		}
	}
	if sh.s.cfg.trackAfter <= 0 {
		if len(sh.rents) != 0 {
			return fmt.Errorf("%d rent records without rent tracking", len(sh.rents))
		}
		return nil
	}
	for h := range sh.rents {
		i := h.slot()
		if h.shard() != sh.index || i >= sh.nslots || !v.borrowed[i] || sh.slot(i).gen() != h.gen() {
			return fmt.Errorf("rent record for %v, which is not borrowed", h)
		}
	}
	if len(sh.rents) != len(v.borrowed) {
		return fmt.Errorf("%d rent records for %d borrowed entries", len(sh.rents), len(v.borrowed))
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

// checkAux: the regions that are not arenas and that the shards hold (AEAD
// backups, spares handed over) are counted; a background cycle may hold
// more of its own, so the count may be larger, never smaller.
func (s *Shuffler) checkAux() error {
	var locked, unlocked int64
	for i := range s.shards {
		sh := &s.shards[i]
		for _, r := range []*osmem.Region{sh.backup, sh.spare} {
			if r != nil {
				locked += lockedLen(r)
				unlocked += unlockedLen(r)
			}
		}
	}
	if al, au := s.auxLocked.Load(), s.auxUnlocked.Load(); al < locked || au < unlocked || al < 0 || au < 0 {
		return fmt.Errorf("regions that are not arenas: %d locked and %d unlocked counted, shards hold %d and %d", al, au, locked, unlocked)
	}
	return nil
}

func allZero(b []byte) bool {
	var z [4096]byte
	for len(b) > 0 {
		n := min(len(b), len(z))
		if !bytes.Equal(b[:n], z[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
