package memshuffle

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
)

// wasteful reports whether the shard maps enough more than its entries
// hold for compaction to be worth a step: a sixteenth of the live data, plus
// one arena of the minimum size.
func (sh *shard) wasteful() bool {
	held := sh.liveBytes + int64(sh.live*sh.ov)
	return sh.free.Bytes() > 0 && sh.mapped-held > held/16+int64(sh.s.cfg.arenaSize)
}

// compact runs one bounded compaction step, continuing where the last one
// stopped: it drains arenas emptier than the shard's average into holes of
// others. It reports the bytes it moved.
func (sh *shard) compact() uint64 {
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
		if src == sh.cur || src.dedicated || int64(src.bytes)*sh.mapped >= held*int64(len(src.mem)) {
			continue
		}
		a, off, ok := sh.room(int(sl.size)+sh.ov, sl.align(), src)
		if !ok && src.bytes*4 < len(src.mem) && len(src.mem) >= sh.arenaSize(0) {
			// Holes are too small, but this arena is nearly empty: a new
			// current arena costs less than keeping it. Without memory the
			// entry stays, and holes have to do.
			var err error
			a, off, err = sh.place(int(sl.size)+sh.ov, sl.align())
			ok = err == nil
		}
		if !ok {
			continue
		}
		moved += sh.move(sl, a, off)
		if n++; n == compactMoves {
			break
		}
	}
	sh.s.bytesMoved.Add(moved)
	return moved
}

// room finds size bytes outside the arena src in space already mapped: a
// hole, or the current arena's unused space.
func (sh *shard) room(size, align int, src *arena) (*arena, int, bool) {
	if ai, off, ok := sh.free.TakeOutside(uint32(size), uint32(align), src.index); ok {
		a := sh.arenas[ai]
		a.used = max(a.used, int(off)+size)
		return a, int(off), true
	}
	if off, ok := sh.fit(sh.cur, size, align); ok {
		return sh.cur, off, true
	}
	return nil, 0, false
}
