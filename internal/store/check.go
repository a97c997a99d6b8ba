package store

import (
	"bytes"
	"fmt"
	"slices"
	"unsafe"
)

// Check verifies every invariant the engine keeps, in the spirit of bbolt's
// Tx.Check: the slot table and its free list, the counts, the deadlines,
// the arenas and the free-space index, that every byte outside an entry is
// zero, the mapped, locked, unlocked and dumpable accounting, and the
// waiters. It reads all arena memory, so it is meant for tests. The caller
// holds the shard's lock.
func (e *Shard) Check() error {
	onFree, err := e.Slots.checkFreeList()
	if err != nil {
		return err
	}
	v, err := e.checkSlots(onFree)
	if err != nil {
		return err
	}
	if c, r := v.c, e.Counts; c != r {
		return fmt.Errorf("counted live=%d rented=%d viewed=%d bytes=%d big=%d, recorded %d %d %d %d %d",
			c.live, c.rented, c.viewed, c.liveBytes, c.bigBytes, r.live, r.rented, r.viewed, r.liveBytes, r.bigBytes)
	}
	if err := e.Expiries.check(&e.Slots); err != nil {
		return err
	}
	for k, r := range e.reserved {
		// A place on its way to hold an entry is one already.
		v.spans[e.resArena[k]] = append(v.spans[e.resArena[k]], r)
	}
	if err := e.checkArenas(v.spans); err != nil {
		return err
	}
	return e.Waiters.Check()
}

// span is a stretch [off, end) of an arena.
type span struct{ off, end int }

// slotsView is what one pass over the slots found, for the checks that
// compare it with the records.
type slotsView struct {
	c     Counts
	spans map[uint32][]span // entries, by arena
}

// checkSlots walks the slot table: states, tombstones, where each entry is
// and its alignment, and viewer counts.
func (e *Shard) checkSlots(onFree map[uint32]bool) (*slotsView, error) {
	v := &slotsView{spans: make(map[uint32][]span)}
	for i := range e.Slots.n {
		sl := e.Slots.At(i)
		if (sl.State() == StateViewed) != (sl.viewers > 0) {
			return nil, fmt.Errorf("slot %d in state %d has %d viewers", i, sl.State(), sl.viewers)
		}
		switch sl.State() {
		case StateFree:
			if !onFree[i] && sl.Gen() != 0 {
				return nil, fmt.Errorf("free slot %d (gen %d) is not on the free list", i, sl.Gen())
			}
			continue
		case StateLive, StateRented, StateViewed:
		case StateExpired:
			if _, ok := e.Expiries.Get(i); ok || onFree[i] || sl.Gen() == 0 || sl.Size != 0 || sl.Ctr() != 0 || sl.Off != 0 || sl.Arena() != 0 {
				return nil, fmt.Errorf("bad tombstone %d: %+v", i, *sl)
			}
			continue
		default:
			return nil, fmt.Errorf("slot %d has state %d", i, sl.State())
		}
		if onFree[i] {
			return nil, fmt.Errorf("live slot %d on the free list", i)
		}
		v.c.entry(int64(sl.Size), e.OwnArena(sl), 1)
		switch sl.State() {
		case StateRented:
			v.c.rented++
		case StateViewed:
			v.c.viewed++
		}
		if int(sl.Arena()) >= len(e.Arenas.list) || e.Arenas.list[sl.Arena()] == nil {
			return nil, fmt.Errorf("slot %d in missing arena %d", i, sl.Arena())
		}
		a := e.Arenas.list[sl.Arena()]
		if own := e.OwnArena(sl); own != a.Dedicated {
			return nil, fmt.Errorf("slot %d of %d bytes aligned to %d: own arena %v, in arena %d dedicated %v", i, sl.Size, sl.Align(), own, sl.Arena(), a.Dedicated)
		}
		end := int(sl.Off) + int(sl.Size) + e.ov
		if sl.Size == 0 || end > a.Used || a.Used > len(a.Mem) {
			return nil, fmt.Errorf("slot %d [%d,%d) outside arena used %d/%d", i, sl.Off, end, a.Used, len(a.Mem))
		}
		if addr := uintptr(unsafe.Pointer(&a.Mem[sl.Off])); addr%uintptr(sl.Align()) != 0 {
			return nil, fmt.Errorf("slot %d at %#x not aligned to %d", i, addr, sl.Align())
		}
		v.spans[sl.Arena()] = append(v.spans[sl.Arena()], span{int(sl.Off), end})
	}
	return v, nil
}

// checkArenas: arena records, entry counts, the zero-byte invariant (no
// byte outside an entry holds anything), every byte below an arena's top
// in exactly one entry or free extent, and the mapped, locked, unlocked and
// dumpable counts.
func (e *Shard) checkArenas(spans map[uint32][]span) error {
	s := &e.Arenas
	if len(s.list) > MaxArenas {
		return fmt.Errorf("%d arena indexes, more than a slot holds (%d)", len(s.list), MaxArenas)
	}
	if err := s.free.Check(); err != nil {
		return err
	}
	holes := make(map[uint32][]span)
	var bad error
	s.free.Each(func(ai, off, n uint32) {
		if int(ai) >= len(s.list) || s.list[ai] == nil || s.list[ai].Dedicated {
			bad = fmt.Errorf("free space in missing or dedicated arena %d", ai)
			return
		}
		holes[ai] = append(holes[ai], span{int(off), int(off + n)})
	})
	if bad != nil {
		return bad
	}
	if s.cur != nil && (int(s.cur.Index) >= len(s.list) || s.list[s.cur.Index] != s.cur || s.cur.Dedicated) {
		return fmt.Errorf("current arena %d is not one of the set, or dedicated", s.cur.Index)
	}
	for _, h := range s.holes {
		if int(h) >= len(s.list) || s.list[h] != nil {
			return fmt.Errorf("arena index %d listed for reuse but in use", h)
		}
	}
	var mapped, locked, unlocked, dumpable int64
	for ai, a := range s.list {
		if a == nil {
			continue
		}
		if a.Index != uint32(ai) {
			return fmt.Errorf("arena %d records index %d", ai, a.Index)
		}
		mapped += int64(len(a.Mem))
		locked += LockedLen(a.Reg)
		unlocked += UnlockedLen(a.Reg)
		if !a.Reg.DontDump {
			dumpable += int64(len(a.Mem))
		}
		sp := spans[uint32(ai)]
		bytes := 0
		for _, e := range sp {
			bytes += e.end - e.off
		}
		if a.Live != len(sp) || a.Bytes != bytes {
			return fmt.Errorf("arena %d counts %d entries of %d bytes, holds %d of %d", ai, a.Live, a.Bytes, len(sp), bytes)
		}
		if a.Dedicated && a.Live > 1 {
			return fmt.Errorf("dedicated arena %d holds %d entries", ai, a.Live)
		}
		if a.Live == 0 && a != s.cur && !a.UnmapFailed {
			return fmt.Errorf("arena %d is empty but still mapped", ai)
		}
		if a.Top > len(a.Mem) || a.Used > len(a.Mem) || (a != s.cur && !a.Dedicated && a.Top != len(a.Mem)) {
			return fmt.Errorf("arena %d top %d used %d of %d", ai, a.Top, a.Used, len(a.Mem))
		}
		// Entries must not overlap, and every byte outside them must be
		// zero: no ciphertext or plaintext is left where an entry was.
		slices.SortFunc(sp, func(x, y span) int { return x.off - y.off })
		pos := 0
		for _, e := range sp {
			if e.off < pos {
				return fmt.Errorf("arena %d entries overlap at %d", ai, e.off)
			}
			if !AllZero(a.Mem[pos:e.off]) {
				return fmt.Errorf("arena %d has stale bytes in [%d,%d)", ai, pos, e.off)
			}
			pos = e.end
		}
		if !AllZero(a.Mem[pos:]) {
			return fmt.Errorf("arena %d has stale bytes after %d", ai, pos)
		}
		if a.Dedicated {
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
		if pos != a.Top {
			return fmt.Errorf("arena %d: entries and free space end at %d, top %d", ai, pos, a.Top)
		}
	}
	if mapped != s.mapped || locked != s.locked || unlocked != s.unlocked || dumpable != s.dumpable {
		return fmt.Errorf("mapped %d locked %d unlocked %d dumpable %d, recorded %d %d %d %d",
			mapped, locked, unlocked, dumpable, s.mapped, s.locked, s.unlocked, s.dumpable)
	}
	return nil
}

// CheckEmpty verifies that a closed shard holds nothing.
func (e *Shard) CheckEmpty() error {
	if len(e.Arenas.list) != 0 || e.Slots.n != 0 || e.Counts != (Counts{}) || e.Arenas.free.Len() != 0 || e.Expiries.Len() != 0 || e.Arenas.mapped != 0 {
		return fmt.Errorf("closed but holds state")
	}
	return nil
}

// AllZero reports whether every byte of b is zero.
func AllZero(b []byte) bool {
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
