package memshuffle

import (
	"slices"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// Compaction keeps the memory a shard maps close to what its entries hold
// without any Shuffle: when freed space that no new entry fits into adds up,
// a bounded step moves entries out of arenas that are mostly empty into
// holes of other arenas (or the current arena's unused space), so that the
// mostly empty ones drain and are released. It maps a new current arena only
// to empty an arena that is nearly empty, so it makes progress when nothing
// more can be mapped or locked.
const (
	compactSlots = 64 // slots a step looks at
	compactMoves = 8  // entries a step moves at most
	// reclaimSteps bounds the compaction an allocation that hit the memory
	// or lock limit does before it fails.
	reclaimSteps = 16
)

// wasteful reports whether the holes in the shard's arenas add up to
// enough for compaction to be worth a step: a sixteenth of the live data,
// plus one arena of the minimum size. The current arena's unused space does
// not count: moving entries cannot make it smaller.
func (sh *shard) wasteful() bool {
	held := sh.liveBytes + int64(sh.live*sh.ov)
	return sh.free.Bytes() > held/16+int64(sh.s.cfg.arenaSize)
}

// compact runs one bounded compaction step, continuing where the last one
// stopped: it drains arenas no fuller than the shard's average into holes
// of fuller ones. It reports the bytes it moved.
func (sh *shard) compact(later *unmapList) uint64 {
	held := sh.liveBytes + int64(sh.live*sh.ov)
	var moved uint64
	n := 0
	for range min(compactSlots, int(sh.nslots)) {
		if sh.cursor >= sh.nslots {
			sh.cursor = 0
		}
		sl := sh.slot(sh.cursor)
		sh.cursor++
		if sl.state() != stateLive {
			continue
		}
		src := sh.arenas[sl.arena]
		if src == sh.cur || src.dedicated || int64(src.bytes)*sh.mapped > held*int64(len(src.mem)) {
			continue
		}
		a, off, ok := sh.room(int(sl.size)+sh.ov, sl.align(), src)
		if !ok && src.bytes*4 < len(src.mem) && len(src.mem) >= sh.arenaSize(0) {
			// Holes are too small, but this arena is nearly empty: a new
			// current arena costs less than keeping it. Without memory the
			// entry stays, and holes have to do.
			var err error
			a, off, err = sh.place(int(sl.size)+sh.ov, sl.align(), later)
			ok = err == nil
		}
		if !ok {
			continue
		}
		moved += sh.move(sl, a, off, later)
		if n++; n == compactMoves {
			break
		}
	}
	sh.s.bytesMoved.Add(moved)
	return moved
}

// room finds size bytes for an entry of src in space already mapped: a
// hole in an arena at least as full as src, or the current arena's unused
// space.
func (sh *shard) room(size, align int, src *arena) (*arena, int, bool) {
	fuller := func(ai uint32) bool {
		d := sh.arenas[ai]
		return d != src && d.bytes*len(src.mem) >= src.bytes*len(d.mem)
	}
	if ai, off, ok := sh.free.TakeWhere(uint32(size), uint32(align), fuller); ok {
		a := sh.arenas[ai]
		a.used = max(a.used, int(off)+size)
		return a, int(off), true
	}
	if off, ok := sh.fit(sh.cur, size, align); ok {
		return sh.cur, off, true
	}
	return nil, 0, false
}

// squeeze empties the arenas that hold least into holes of those that hold
// more, mapping nothing: Shuffle's way forward when it cannot map fresh
// arenas. Unlocked arenas are emptied first, into locked ones only, so
// that memory the system would not lock is given back before any other.
// It reports the bytes it moved.
func (sh *shard) squeeze() uint64 {
	type src struct {
		a     *arena
		slots []uint32
	}
	rank := make([]int, len(sh.arenas))
	var srcs []src
	for _, a := range sh.arenas {
		if a != nil && a != sh.cur && !a.dedicated && a.live > 0 {
			srcs = append(srcs, src{a: a})
		}
	}
	// Unlocked first, then the emptiest.
	slices.SortFunc(srcs, func(x, y src) int {
		if x.a.reg.Locked != y.a.reg.Locked {
			if x.a.reg.Locked {
				return 1
			}
			return -1
		}
		return x.a.bytes - y.a.bytes
	})
	for k, s := range srcs {
		rank[s.a.index] = k + 1
	}
	if sh.cur != nil {
		rank[sh.cur.index] = len(srcs) + 1
	}
	byArena := make(map[uint32]int, len(srcs))
	for k, s := range srcs {
		byArena[s.a.index] = k
	}
	for i := range sh.nslots {
		if sl := sh.slot(i); sl.state() == stateLive {
			if k, ok := byArena[sl.arena]; ok {
				srcs[k].slots = append(srcs[k].slots, i)
			}
		}
	}
	needLock := sh.s.cfg.lock != LockNone
	var moved uint64
	for _, s := range srcs {
		r := rank[s.a.index]
		accept := func(ai uint32) bool {
			d := sh.arenas[ai]
			return rank[ai] > r && (d.reg.Locked || !needLock)
		}
		for _, i := range s.slots {
			sl := sh.slot(i)
			size, align := int(sl.size)+sh.ov, sl.align()
			var a *arena
			var off int
			if ai, o, ok := sh.free.TakeWhere(uint32(size), uint32(align), accept); ok {
				a, off = sh.arenas[ai], int(o)
				a.used = max(a.used, off+size)
			} else if c := sh.cur; c == nil || (needLock && !c.reg.Locked) {
				break // unlocked space is no better than where it is
			} else if o, ok := sh.fit(c, size, align); ok {
				a, off = c, o
			} else {
				break
			}
			moved += sh.move(sl, a, off, nil)
		}
	}
	sh.s.bytesMoved.Add(moved)
	return moved
}

// relock locks arenas the system refused to lock when they were mapped,
// now that it may have room again; it stops at the first refusal.
func (sh *shard) relock() {
	if sh.s.cfg.lock == LockNone || sh.unlocked == 0 {
		return
	}
	for _, a := range sh.arenas {
		if a == nil || a.reg.Locked {
			continue
		}
		u := unlockedLen(a.reg)
		if osmem.Relock(a.reg) != nil {
			return
		}
		sh.unlocked -= u
		sh.lockedBytes += lockedLen(a.reg)
	}
}

// reclaim gives back what memory it can, in bounded work, for an
// allocation that the system refused memory or a lock: empty arenas of
// this shard and, where their locks are free, of the others, then a few
// compaction steps.
func (sh *shard) reclaim() {
	if c := sh.cur; c != nil && c.live == 0 {
		sh.replaceCur(nil, nil)
	}
	if sh.backup != nil && sh.rented+sh.viewed == 0 {
		sh.dropBackup()
	}
	for i := range sh.s.shards {
		o := &sh.s.shards[i]
		if o == sh || !o.mu.TryLock() {
			continue
		}
		if !o.closed {
			if c := o.cur; c != nil && c.live == 0 {
				o.replaceCur(nil, nil)
			}
		}
		o.mu.Unlock()
	}
	for range reclaimSteps {
		sh.compact(nil)
	}
}
