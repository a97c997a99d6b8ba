package store

import (
	"slices"
	"sync/atomic"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// MaxArenaSize caps the arenas a shard grows into, so that one long-lived
// entry cannot pin much memory; larger entries get an arena of their own.
const MaxArenaSize = 16 << 20

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
	// ReclaimSteps bounds the compaction an allocation that hit the memory
	// or lock limit does before it fails.
	ReclaimSteps = 16
)

// Shard is the storage engine of one shard: its slot table, arenas, counts,
// deadlines and waiters, and the moves between arenas that keep memory
// close to what the entries hold. It knows nothing of ciphers or Handles:
// entries are ciphertext of Size bytes followed by a tag of the overhead
// given to Init, placed, moved and wiped as bytes.
//
// Shard is not safe for concurrent use: its owner guards it with the
// shard's lock, which every method below expects held.
type Shard struct {
	Slots    Slots
	Counts   Counts
	Expiries Expiries
	Waiters  Waiters

	ov       int            // bytes of tag after each entry's data
	minArena int            // the smallest arena mapped for shared use
	moved    *atomic.Uint64 // bytes moved, for statistics
	cursor   uint32         // next slot compaction and sweeps look at
	reserved []span         // places Reserve holds for entries on their way, by arena
	resArena []uint32       // reserved[k] is in arena resArena[k]

	// Last, as it ends with the free-space index, which is large and off
	// the paths of Rent and Return.
	Arenas Arenas
}

// Config is what a Shard needs from its owner.
type Config struct {
	Overhead int            // bytes of tag after each entry's data
	MinArena int            // size of the first arenas mapped for shared use
	Map      MapFunc        // maps arena regions
	Aux      *Aux           // counts regions released to an UnmapList
	Moved    *atomic.Uint64 // counts the bytes of entries moved
	Released *atomic.Uint64 // counts the arenas released

	// Full is the error, wrapped, that mapping or adopting an arena
	// returns when the shard holds MaxArenas arenas already; nil means
	// errArenaLimit.
	Full error
}

// Init readies an empty Shard.
func (e *Shard) Init(c Config) {
	e.ov, e.minArena, e.moved = c.Overhead, c.MinArena, c.Moved
	e.Arenas.mapRegion, e.Arenas.aux, e.Arenas.released = c.Map, c.Aux, c.Released
	e.Arenas.full, e.Arenas.keepAny = c.Full, c.MinArena
	if e.Arenas.full == nil {
		e.Arenas.full = errArenaLimit
	}
}

// Overhead is the bytes of tag after each entry's data.
func (e *Shard) Overhead() int { return e.ov }

// Bytes returns the entry's data.
func (e *Shard) Bytes(sl *Slot) []byte {
	a := e.Arenas.list[sl.Arena()]
	return a.Mem[sl.Off : sl.Off+sl.Size : sl.Off+sl.Size]
}

// Extent returns all the memory the entry takes: its data, then its tag.
func (e *Shard) Extent(sl *Slot) []byte {
	a := e.Arenas.list[sl.Arena()]
	end := sl.Off + sl.Size + uint32(e.ov)
	return a.Mem[sl.Off:end:end]
}

// ArenaSize is the size of the next arena for n bytes: arenas grow with
// the data a shard holds, up to MaxArenaSize.
func (e *Shard) ArenaSize(n int) int {
	sz := e.minArena
	// Oversize entries do not count: they never share these arenas.
	for sz < MaxArenaSize && int64(sz) < (e.Counts.liveBytes-e.Counts.bigBytes)/16 {
		sz <<= 1
	}
	return max(sz, n)
}

// EntryArenaSize is ArenaSize for an arena mapped for one entry of n
// bytes, made a few pages larger where that lets entries of that size
// fill it (see fitWhole). Arenas mapped for many entries (a Shuffle's, a
// background step's) are sized by the bytes they take, not fitted.
func (e *Shard) EntryArenaSize(n int) int {
	sz := e.ArenaSize(n)
	if n >= sz {
		return sz
	}
	return fitWhole(sz, n, max(sz, MaxArenaSize), osmem.PageSize())
}

// fitWhole returns sz, or the fewest pages more, up to a quarter more and
// never past most, that leave no more than an eighth of the arena past the
// last of the entries of n bytes it holds. An entry just over half an
// arena otherwise took one arena alone: AES256GCM entries of 32 KiB
// (32,784 bytes with their tag) each took an arena of 64 KiB, and half as
// many fit under a memory-lock limit as with AES256CTR. With pages of 16
// KiB or more, a quarter of a small arena is less than a page, and it
// cannot help.
func fitWhole(sz, n, most, page int) int {
	if n <= 0 {
		return sz
	}
	for c := sz; c <= min(sz+sz/4, most); c += page {
		if c%n <= c/8 {
			return c
		}
	}
	return sz
}

// Oversize reports whether an entry cannot share an arena: it would not fit
// in one of the largest size a shard maps for shared use.
func (e *Shard) Oversize(size, align int) bool {
	return size+align-1 > max(MaxArenaSize, e.minArena)
}

// OwnArena reports whether the entry in sl gets an arena of its own: the
// one rule Alloc, Shuffle, the background steps and compaction place
// entries by, and the invariant checker holds them to. It is Oversize of
// the entry's extent, tag included, at the entry's alignment: an extent of
// exactly MaxArenaSize that must start 16-aligned does not fit a shared
// arena of that size once any other entry is in it.
func (e *Shard) OwnArena(sl *Slot) bool { return e.Oversize(int(sl.Size)+e.ov, sl.Align()) }

// NewArena maps an arena of at least n bytes for the shard.
func (e *Shard) NewArena(n int) (*Arena, error) {
	return e.Arenas.Map(e.ArenaSize(n))
}

// Dedicated maps an arena for one oversize entry alone, of just its size:
// not the shard's usual arena size, and never the current arena.
func (e *Shard) Dedicated(size, align int) (*Arena, int, error) {
	a, err := e.Arenas.Map(size + align - 1)
	if err != nil {
		return nil, 0, err
	}
	// Arenas start on a page boundary, which satisfies every alignment.
	a.Dedicated = true
	a.Top, a.Used = size, size
	return a, 0, nil
}

// PlaceNew finds size bytes for a new entry: in space an earlier entry
// released if some is large enough, else as Place does.
func (e *Shard) PlaceNew(size, align int) (*Arena, int, error) {
	if e.Arenas.free.Len() == 0 || e.Oversize(size, align) {
		return e.Place(size, align, nil)
	}
	if a, off, ok := e.Arenas.TakeFree(size, align); ok {
		return a, off, nil
	}
	if off, ok := e.Arenas.Fit(e.Arenas.cur, size, align); ok {
		return e.Arenas.cur, off, nil
	}
	// Before mapping another arena while holes add up to half of one,
	// compact: the entry may fit in the holes that makes.
	if e.Arenas.free.Bytes() >= int64(e.minArena)/2 {
		for range ReclaimSteps / 4 {
			e.Compact(nil)
		}
		if a, off, ok := e.Arenas.TakeFree(size, align); ok {
			return a, off, nil
		}
	}
	return e.Place(size, align, nil)
}

// Place finds size bytes for an entry in the shard's current arena, mapping
// a new one when it is full. An old current arena left empty is released
// as Arenas.Release does with later.
func (e *Shard) Place(size, align int, later *UnmapList) (*Arena, int, error) {
	if e.Oversize(size, align) {
		// An arena of its own, which leaves the current arena's free space
		// for the entries after it. Before the current arena is tried: one
		// emptied back to its start has room for an extent of its whole
		// size, which, aligned, would not fit beside any other entry.
		return e.Dedicated(size, align)
	}
	if off, ok := e.Arenas.Fit(e.Arenas.cur, size, align); ok {
		return e.Arenas.cur, off, nil
	}
	a, err := e.Arenas.Map(e.EntryArenaSize(size))
	if err != nil {
		return nil, 0, err
	}
	e.Arenas.ReplaceCur(a, later)
	off, _ := e.Arenas.Fit(a, size, align)
	return a, off, nil
}

// Admit counts a new entry, whose slot already says where in a it is.
func (e *Shard) Admit(sl *Slot, a *Arena) {
	a.Live++
	a.Bytes += int(sl.Size) + e.ov
	e.Counts.entry(int64(sl.Size), e.OwnArena(sl), 1)
}

// Move copies the ciphertext of an unborrowed entry to off in dst and
// wipes where it was. It reports the bytes moved.
func (e *Shard) Move(sl *Slot, dst *Arena, off int, later *UnmapList) uint64 {
	src := e.Extent(sl)
	copy(dst.Mem[off:off+len(src)], src)
	e.Rehome(sl, dst, off, later)
	return uint64(sl.Size)
}

// Rehome points the slot at off in a, where its bytes have just been
// written, after wiping the place they were.
func (e *Shard) Rehome(sl *Slot, a *Arena, off int, later *UnmapList) {
	osmem.Wipe(e.Extent(sl))
	e.vacate(sl, later)
	sl.SetArena(a.Index)
	sl.Off = uint32(off)
	a.Live++
	a.Bytes += int(sl.Size) + e.ov
}

// Reserve finds size bytes aligned to align, as Place does, for a
// borrowed entry that its owner will write there with the shard unlocked
// (see Settle). Until then the place counts as an entry of its arena, so
// that no compaction, Shuffle or release empties the arena under the
// write, and nothing else is placed there; Check counts it as an entry too.
func (e *Shard) Reserve(size, align int, later *UnmapList) (*Arena, int, error) {
	a, off, err := e.Place(size, align, later)
	if err != nil {
		return nil, 0, err
	}
	a.Live++
	a.Bytes += size
	e.reserved = append(e.reserved, span{off, off + size})
	e.resArena = append(e.resArena, a.Index)
	return a, off, nil
}

// Settle moves the entry in sl, whose old place the caller has wiped, to
// the place at off in a that Reserve gave and the caller has written.
func (e *Shard) Settle(sl *Slot, a *Arena, off int, later *UnmapList) {
	e.unreserve(a, off)
	e.vacate(sl, later)
	sl.SetArena(a.Index)
	sl.Off = uint32(off)
}

// Unreserve gives back the place at off in a that Reserve gave, which the
// caller has wiped.
func (e *Shard) Unreserve(a *Arena, off int, later *UnmapList) {
	n := e.unreserve(a, off)
	e.Arenas.Vacate(a, uint32(off), uint32(n), later)
}

// unreserve forgets the reservation at off in a, which stays counted in
// the arena, and returns its size.
func (e *Shard) unreserve(a *Arena, off int) int {
	for k, r := range e.reserved {
		if e.resArena[k] == a.Index && r.off == off {
			last := len(e.reserved) - 1
			e.reserved[k], e.resArena[k] = e.reserved[last], e.resArena[last]
			e.reserved, e.resArena = e.reserved[:last], e.resArena[:last]
			return r.end - r.off
		}
	}
	panic("store: no reservation at that place")
}

// Relocate moves an unborrowed entry that is not in the current arena into
// it. It reports the bytes moved, and false when there was no memory to
// move into; the entry then stays, safe, where it was.
func (e *Shard) Relocate(sl *Slot, later *UnmapList) (uint64, bool) {
	if sl.State() != StateLive || e.Arenas.list[sl.Arena()] == e.Arenas.cur {
		return 0, true
	}
	a, off, err := e.Place(int(sl.Size)+e.ov, sl.Align(), later)
	if err != nil {
		return 0, false
	}
	return e.Move(sl, a, off, later), true
}

// Drop wipes an entry and takes it out of its arena and the counts; the
// caller decides what becomes of the slot.
func (e *Shard) Drop(sl *Slot, later *UnmapList) {
	osmem.Wipe(e.Extent(sl))
	e.Counts.entry(int64(sl.Size), e.OwnArena(sl), -1)
	e.vacate(sl, later)
}

// vacate takes an entry, already wiped, out of its arena.
func (e *Shard) vacate(sl *Slot, later *UnmapList) {
	e.Arenas.Vacate(e.Arenas.list[sl.Arena()], sl.Off, sl.Size+uint32(e.ov), later)
}

// ReleaseEmpty releases every empty arena, the current one included, so a
// shard without entries maps nothing; those the operating system would not
// take back when they emptied get another try. Released arenas go to
// later, if not nil, to be unmapped once the caller lets go of the lock.
// It returns the first error of a release.
func (e *Shard) ReleaseEmpty(later *UnmapList) error {
	var err error
	for _, a := range e.Arenas.list {
		if a != nil && a.Live == 0 {
			if r := e.Arenas.Release(a, later); r != nil && err == nil {
				err = r
			}
		}
	}
	// Last, as Release with later nil lets one go idle.
	e.Arenas.aux.DropIdle(later)
	return err
}

// Sweep moves up to n unborrowed entries that are not in the current arena
// into it, continuing where the last sweep or compaction stopped. Arenas
// it empties are released as Arenas.Release does with later.
func (e *Shard) Sweep(n int, later *UnmapList) {
	var moved uint64
	for range min(n, int(e.Slots.n)) {
		sl := e.nextSlot()
		if e.OwnArena(sl) {
			// Alone in its arena already: moving it compacts nothing.
			continue
		}
		m, ok := e.Relocate(sl, later)
		moved += m
		if !ok {
			break
		}
	}
	e.moved.Add(moved)
}

// nextSlot returns the slot at the cursor and moves the cursor on, round
// the table; the table is not empty.
func (e *Shard) nextSlot() *Slot {
	if e.cursor >= e.Slots.n {
		e.cursor = 0
	}
	sl := e.Slots.At(e.cursor)
	e.cursor++
	return sl
}

// Wasteful reports whether the holes in the shard's arenas add up to
// enough for compaction to be worth a step: a sixteenth of the live data,
// plus one arena of the minimum size. The current arena's unused space does
// not count: moving entries cannot make it smaller.
func (e *Shard) Wasteful() bool {
	held := e.Counts.liveBytes + int64(e.Counts.live*e.ov)
	return e.Arenas.free.Bytes() > held/16+int64(e.minArena)
}

// Compact runs one bounded compaction step, continuing where the last one
// stopped: it drains arenas no fuller than the average of the arenas it may
// drain (all but the current one) into holes of fuller ones or the current
// arena's unused space. It reports the bytes it moved.
func (e *Shard) Compact(later *UnmapList) uint64 {
	// Not the shard's average: a current arena emptier than the others,
	// with its unused space, pulls that below every other arena, and then
	// no step drains anything, however long Wasteful holds and however
	// many Allocs and Frees run a step.
	held := e.Counts.liveBytes + int64(e.Counts.live*e.ov)
	mapped := e.Arenas.mapped
	if c := e.Arenas.cur; c != nil {
		held -= int64(c.Bytes)
		mapped -= int64(len(c.Mem))
	}
	var moved uint64
	n := 0
	// The last arena no room was found for, and the entry that found
	// none: an entry as large and as aligned, from the same arena, finds
	// none either (its search starts no lower), so the step does not
	// search again for each of them.
	var failed *Arena
	var failedSize, failedAlign int
	for range min(compactSlots, int(e.Slots.n)) {
		sl := e.nextSlot()
		if sl.State() != StateLive {
			continue
		}
		src := e.Arenas.list[sl.Arena()]
		if src == e.Arenas.cur || src.Dedicated || int64(src.Bytes)*mapped > held*int64(len(src.Mem)) {
			continue
		}
		size, align := int(sl.Size)+e.ov, sl.Align()
		if src == failed && size >= failedSize && align >= failedAlign {
			continue
		}
		a, off, ok := e.room(size, align, src)
		if !ok && src.Bytes*4 < len(src.Mem) && len(src.Mem) >= e.ArenaSize(0) {
			// Holes are too small, but this arena is nearly empty: a new
			// current arena costs less than keeping it. Without memory the
			// entry stays, and holes have to do.
			var err error
			a, off, err = e.Place(size, align, later)
			ok = err == nil
		}
		if !ok {
			failed, failedSize, failedAlign = src, size, align
			continue
		}
		moved += e.Move(sl, a, off, later)
		if n++; n == compactMoves {
			break
		}
	}
	e.moved.Add(moved)
	return moved
}

// room finds size bytes for an entry of src in space already mapped: a
// hole in an arena at least as full as src, or the current arena's unused
// space.
func (e *Shard) room(size, align int, src *Arena) (*Arena, int, bool) {
	fuller := func(d *Arena) bool {
		return d != src && d.Bytes*len(src.Mem) >= src.Bytes*len(d.Mem)
	}
	if a, off, ok := e.Arenas.TakeFreeWhere(size, align, fuller); ok {
		return a, off, true
	}
	if off, ok := e.Arenas.Fit(e.Arenas.cur, size, align); ok {
		return e.Arenas.cur, off, true
	}
	return nil, 0, false
}

// Squeeze empties the arenas that hold least into holes of those that hold
// more, mapping nothing: a shuffle's way forward when it cannot map fresh
// arenas. With needLock, unlocked arenas are emptied first, into locked
// ones where there is room and else into unlocked ones that hold more, so
// that memory the system would not lock is given back before any other,
// and locked ones into locked ones only: no entry moves out of locked
// memory. It reports the bytes it moved.
func (e *Shard) Squeeze(needLock bool) uint64 {
	type src struct {
		a     *Arena
		slots []uint32
	}
	rank := make([]int, len(e.Arenas.list))
	var srcs []src
	cur := e.Arenas.cur
	for _, a := range e.Arenas.list {
		if a != nil && a != cur && !a.Dedicated && a.Live > 0 {
			srcs = append(srcs, src{a: a})
		}
	}
	// Unlocked first, then the emptiest.
	slices.SortFunc(srcs, func(x, y src) int {
		if x.a.Reg.Locked != y.a.Reg.Locked {
			if x.a.Reg.Locked {
				return 1
			}
			return -1
		}
		return x.a.Bytes - y.a.Bytes
	})
	for k, s := range srcs {
		rank[s.a.Index] = k + 1
	}
	if cur != nil {
		rank[cur.Index] = len(srcs) + 1
	}
	byArena := make(map[uint32]int, len(srcs))
	for k, s := range srcs {
		byArena[s.a.Index] = k
	}
	for i := range e.Slots.n {
		if sl := e.Slots.At(i); sl.State() == StateLive {
			if k, ok := byArena[sl.Arena()]; ok {
				srcs[k].slots = append(srcs[k].slots, i)
			}
		}
	}
	var moved uint64
	for _, s := range srcs {
		r := rank[s.a.Index]
		accept := func(d *Arena) bool {
			return rank[d.Index] > r && (d.Reg.Locked || !needLock)
		}
		// An unlocked arena's entries lose nothing in another unlocked
		// one: with no room in locked memory they still drain, and the
		// arena is given back. Refusing them left a shard the system
		// would not lock at all mapped in full.
		stayLocked := needLock && s.a.Reg.Locked
		anyFuller := func(d *Arena) bool { return rank[d.Index] > r }
		for _, i := range s.slots {
			sl := e.Slots.At(i)
			size, align := int(sl.Size)+e.ov, sl.Align()
			a, off, ok := e.Arenas.TakeFreeWhere(size, align, accept)
			if !ok && needLock && !stayLocked {
				a, off, ok = e.Arenas.TakeFreeWhere(size, align, anyFuller)
			}
			if !ok {
				if cur == nil || (stayLocked && !cur.Reg.Locked) {
					break // unlocked space is no better than where it is
				}
				if off, ok = e.Arenas.Fit(cur, size, align); !ok {
					break
				}
				a = cur
			}
			moved += e.Move(sl, a, off, nil)
		}
	}
	e.moved.Add(moved)
	return moved
}

// Reset forgets every slot, count and deadline and every arena, without
// unmapping any: the caller has unmapped them, or taken their regions
// over. Waiting goroutines are woken.
func (e *Shard) Reset() {
	e.Slots.Reset()
	e.Arenas.Drop()
	e.Counts.Reset()
	e.Expiries.Reset()
	e.Waiters.WakeAll()
	e.cursor = 0
	e.reserved, e.resArena = nil, nil
}
