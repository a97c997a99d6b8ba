package memshuffle

import (
	"cmp"
	"errors"
	mrand "math/rand/v2"
	"slices"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// sweepSlots is how many slots each Return looks at, with
// shuffle-on-borrow-return on, to move entries out of older arenas. It keeps
// old arenas draining, so memory stays bounded without a full Shuffle, at a
// cost per Return that does not grow with the number of entries.
const sweepSlots = 2

// SetShuffleOnBorrowReturn turns shuffle-on-borrow-return on or off. When on,
// every Return moves the returned entry to new space (plus a bounded step of
// compaction), so an entry's address changes each time it is used. It is off
// until enabled.
func (s *Shuffler) SetShuffleOnBorrowReturn(enable bool) {
	if s != nil {
		s.onReturn.Store(enable)
	}
}

// Shuffle moves every unrented entry to a new place drawn uniformly at
// random, independent of its old place and of its age, wipes the space each
// entry left, and returns arenas left empty to the operating system.
// Rented entries stay where they are. Entries move as ciphertext: nothing
// is decrypted. Shuffle locks one shard at a time, so operations on entries
// of other shards go on meanwhile.
//
// The new places are in fresh arenas, except in a shard of at least 256
// entries of one size, 128 bytes or more, that fill the arenas they are
// in, with no rented entry among them: there the entries are permuted
// within those arenas, each to any of their places (its own with
// probability 1/n), which needs no new memory and faults in no page. A
// fresh arena is a new mapping, or the wiped memory of an arena the shard
// shuffled just before emptied, when it has about the size needed. The
// shards are taken from the most data to the least, so that shards of
// about one size follow each other.
//
// If the operating system refuses memory (or, with LockStrict or
// WithSecretMemory, a lock) part-way, the entries moved so far stay moved,
// and the others are packed into the holes of the arenas that hold most,
// which releases the arenas they leave: Shuffle still gives memory back
// when it can map none. Then the shard's unrented entries of each size
// and alignment are permuted among the places they hold in arenas locked
// as theirs are, each to any of them with equal probability (its own
// included), independently of its old place and age; that needs no
// memory. So a shard whose fresh arenas the memory-lock limit cannot hold
// beside its old ones still has its entries moved, though only among the
// places of their size. Such a shard is shuffled once more at the end,
// after the other shards have given back what they emptied: only if that
// is refused too does the error wrap ErrOutOfMemory or ErrLockFailed.
// Should the system refuse to take back an emptied arena (munmap does not
// fail for a correct call), its error is returned too; the arena is
// wiped, and the next Shuffle retries. (A shard some of whose arenas the
// system would not lock unmaps the ones it empties at once, and tries a
// refused one again before it is done: no error when that works.) Every
// entry stays valid either way. Arenas the system would not lock when
// they were mapped, the fresh ones included, are locked again, once the
// arenas Shuffle emptied are released, if it now allows.
func (s *Shuffler) Shuffle() error {
	if !s.made() || s.closed.Load() {
		return ErrClosed
	}
	start := time.Now()
	// Regions the system refused to unmap before: the next Shuffle retries.
	errs := []error{s.aux.Retry()}
	// The shards use one set of scratch arrays in turn, so that a Shuffle
	// allocates them once, not once a shard.
	var work shuffleWork
	var regions handOver
	// A logger handler that ends the goroutine with runtime.Goexit at a
	// hand-over below would otherwise leave the regions the shards emptied
	// mapped, and counted, for good. (Empty once Shuffle returns.)
	defer regions.unmap(&s.aux)
	// closed is what a Shuffle that met a closed shard returns: what was
	// refused on the way too, the refusals of shards still to try again
	// included.
	var refused []shardRefused
	closed := func(pending []shardRefused) error {
		regions.unmap(&s.aux)
		for _, r := range pending {
			errs = append(errs, r.err)
		}
		return errors.Join(append(errs, regions.err, ErrClosed)...)
	}
	for _, i := range s.shuffleOrder() {
		open, err := s.shuffleShard(i, &work, &regions)
		if !open {
			return closed(refused)
		}
		if errors.Is(err, ErrLockFailed) || errors.Is(err, ErrOutOfMemory) {
			refused = append(refused, shardRefused{i, err})
		} else if err != nil {
			errs = append(errs, err)
		}
	}
	// A shard whose fresh arenas were refused, its entries permuted in
	// place instead, tries once more now that the shards after it have
	// given back what they emptied, and the hand-over too: at the
	// memory-lock limit the first shard, which holds most, may need that
	// room. Its refusal is reported only if it meets another.
	regions.unmap(&s.aux)
	for k, r := range refused {
		open, err := s.shuffleShard(r.shard, &work, &regions)
		if !open {
			return closed(refused[k:])
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	regions.unmap(&s.aux)
	errs = append(errs, regions.err)
	s.tally.shuffles.Add(1)
	d := int64(time.Since(start))
	s.tally.shuffleNanos.Add(d)
	storeMax(&s.tally.shuffleMax, d)
	return errors.Join(errs...)
}

// shardRefused is a shard whose Shuffle the system refused memory, and
// its error.
type shardRefused struct {
	shard int
	err   error
}

// shuffleShard shuffles shard i under its lock, with the scratch arrays in
// work and the regions of regions, and reports false, with the shard
// unlocked and untouched, when Close has closed it.
func (s *Shuffler) shuffleShard(i int, work *shuffleWork, regions *handOver) (open bool, err error) {
	sh := &s.shards[i]
	if !sh.lockOpen() {
		return false, nil
	}
	sh.work, sh.regions = *work, regions
	err = sh.shuffle()
	// Fresh arenas mapped while the old ones were still locked may have
	// met the memory-lock limit; the old ones are gone now, and the next
	// chance to lock would otherwise be the next Shuffle, which maps its
	// own fresh arenas unlocked again.
	sh.relock()
	*work, sh.work, sh.regions = sh.work, shuffleWork{}, nil
	clear(work.fresh[:cap(work.fresh)])
	sh.mu.Unlock()
	regions.next(&s.aux)
	s.flushLog()
	return true, err
}

// shuffleOrder lists the shards from the most data in shared arenas to the
// least, the order Shuffle takes them in, so that shards whose fresh
// arenas have about one size follow each other and each can make its
// arenas of the regions the one before emptied (handOver). A single
// goroutine's entries go to every other shard, in shares that differ from
// run to run; in index order the sizes alternated and never matched, and
// each shard mapped fresh arenas, on which the moves' random writes took
// twice as long here as on reused ones (bench/NOTES.md). The sizes are
// read a shard lock at a time, before the Shuffle: entries that come or
// go meanwhile change only the order.
func (s *Shuffler) shuffleOrder() []int {
	order := make([]int, len(s.shards))
	size := make([]int64, len(s.shards))
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		size[i] = sh.Counts.LiveBytes() - sh.Counts.BigBytes()
		sh.mu.Unlock()
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(size[b], size[a]) })
	return order
}

func (sh *shard) shuffle() error {
	sh.sweepExpired(nil)
	// The next Open maps a backup again, of the size it needs: a Shuffle
	// is rare, and the memory it frees may be what the fresh arenas need.
	sh.dropIdleBackup()
	sh.relock()
	w := &sh.work
	w.reset()
	n, uniform, grid := sh.gather()
	if n == 0 {
		return sh.releaseArenas(nil, nil)
	}
	// rank[q] is where entry q lands in the new layout, entries numbered in
	// the order they are moved in: a uniformly random permutation
	// (Fisher-Yates over a ChaCha8 stream seeded from crypto/rand), so the
	// new place of an entry says nothing about its old one or about when
	// it was made.
	w.rank = sh.permutation(w.rank, n)
	// The arenas every entry leaves, and what free space they hold, are
	// known before the layout makes a fresh arena the current one.
	sh.markVacated()
	if grid && sh.inPlaceFits(n) {
		sh.s.tally.bytesMoved.Add(sh.shuffleInPlace(n))
		return sh.releaseArenas(nil, nil)
	}
	var err error
	var placed int
	if uniform {
		placed, err = sh.layoutUniform(n, w.size)
	} else {
		placed, err = sh.layout(n, sh.measure())
	}
	if placed < n {
		// Entries that stay keep their arenas: none is emptied in bulk.
		clear(w.vacated)
	}
	if grid && placed == n && w.dense {
		sh.s.tally.bytesMoved.Add(sh.moveDense())
	} else if grid && placed == n {
		sh.s.tally.bytesMoved.Add(sh.moveBySource())
	} else {
		sh.listSlots()
		sh.s.tally.bytesMoved.Add(sh.moveAll(placed))
	}
	sh.releaseVacated()
	if err != nil {
		// Without fresh arenas, compact into the holes of those that stay,
		// which releases the ones it empties, and then move every entry
		// among the places of its size.
		sh.Squeeze(sh.s.cfg.lock != LockNone)
		sh.s.tally.bytesMoved.Add(sh.permuteBySize())
	}
	return sh.releaseArenas(err, nil)
}

// gather lists the entries to move, in slot order, in w.slots, and counts
// them by arena in w.leaving. It reports how many there are, whether they
// all have one size (w.size, tag included), a multiple of one alignment,
// and whether they also sit on a grid of that size in their arenas. On a
// grid, the places are numbered in address order, arena by arena, from
// w.base[a] for arena a on, and moveBySource walks them in that order.
//
// When every entry moves and each arena's entries fill it from its start
// with no gap (w.dense), place w.base[a]+off/w.size is the entry at off in
// arena a and no other index is needed, nor is w.slots: the arenas'
// counts are w.leaving, and checkDense only reads each live slot's size
// and writes no list of the entries. Otherwise w.at[place] is k+1 for
// the k-th entry in w.slots, and 0 for a place no moving entry holds.
func (sh *shard) gather() (n int, uniform, grid bool) {
	w := &sh.work
	first := uint32(0)
	for first < sh.Slots.Len() && sh.Slots.At(first).State() != store.StateLive {
		first++
	}
	if first == sh.Slots.Len() {
		return 0, false, false
	}
	f := sh.Slots.At(first)
	size, meta := f.Size, f.AlignLog()
	ext := size + uint32(sh.Overhead())
	w.size = int(ext)
	uniform = int(ext)%f.Align() == 0
	w.base = growU32(w.base, len(sh.Arenas.List()))
	w.leaving = growU32(w.leaving, len(sh.Arenas.List()))
	clear(w.leaving)
	// Places are numbered only when there are not many times more of them
	// than entries, or few: the index costs four bytes a place. Entries
	// that would be moved in place need the index too (see shuffleInPlace).
	w.dense = uniform && w.size < minInPlaceSize && sh.numberDense(ext)
	places := 0
	if uniform && !w.dense {
		places = sh.numberPlaces(ext)
	}
	grid = uniform && (w.dense || places <= 4*sh.Counts.Live() || places <= 1<<14)
	w.first = first
	if w.dense {
		if n, ok := sh.checkDense(first, size, meta); ok {
			return n, true, true
		}
		// An entry of another size or alignment: number the places (or
		// not) as for any mix.
		uniform, grid, w.dense = false, false, false
	}
	if grid {
		w.at = growU32(w.at, places)
		clear(w.at)
	}
	clear(w.leaving)
	w.slots = slices.Grow(w.slots, sh.Counts.Live())
	for i := first; i < sh.Slots.Len(); i++ {
		sl := sh.Slots.At(i)
		if sl.State() != store.StateLive {
			continue
		}
		w.leaving[sl.Arena()]++
		w.slots = append(w.slots, i)
		if sl.Size != size || sl.AlignLog() != meta {
			uniform, grid, w.dense = false, false, false
		}
		if grid && !w.dense {
			if sl.Off%ext != 0 {
				grid = false
				continue
			}
			w.at[w.base[sl.Arena()]+sl.Off/ext] = uint32(len(w.slots))
		}
	}
	return len(w.slots), uniform, grid
}

// checkDense is gather's loop for dense places, where every live entry
// moves and numberDense has counted them by arena in w.leaving: it only
// checks that every live entry from slot first on has size ext and
// alignment log2 meta, and reports how many there are. It lists none in
// w.slots; moveDense finds them in the table, and listSlots lists them
// for a Shuffle that cannot place them all.
func (sh *shard) checkDense(first, size uint32, meta uint8) (int, bool) {
	n := 0
	for i := first; i < sh.Slots.Len(); i++ {
		sl := sh.Slots.At(i)
		if sl.State() != store.StateLive {
			continue
		}
		if sl.Size != size || sl.AlignLog() != meta {
			return 0, false
		}
		n++
	}
	return n, n == sh.Counts.Live()
}

// listSlots lists the live entries in w.slots when checkDense did not.
func (sh *shard) listSlots() {
	w := &sh.work
	if len(w.slots) > 0 {
		return
	}
	for i := w.first; i < sh.Slots.Len(); i++ {
		if sh.Slots.At(i).State() == store.StateLive {
			w.slots = append(w.slots, i)
		}
	}
}

// numberDense numbers the places of arenas that entries of ext bytes fill
// from the start with no gap, and reports whether every arena is one: the
// entries' bytes are the arena's high-water mark, so they tile the space
// below it. No entry may be borrowed, since those do not move; then every
// entry the arenas count is one gather lists.
func (sh *shard) numberDense(ext uint32) bool {
	w := &sh.work
	if sh.Counts.Rented() != 0 || sh.Counts.Viewed() != 0 {
		return false
	}
	places := 0
	for i, a := range sh.Arenas.List() {
		if a == nil {
			continue
		}
		if a.Dedicated || a.Bytes != a.Used || a.Live*int(ext) != a.Bytes {
			return false
		}
		w.base[i] = uint32(places)
		w.leaving[i] = uint32(a.Live)
		places += a.Live
	}
	return places == sh.Counts.Live()
}

// numberPlaces numbers every place of ext bytes in every arena and returns
// how many there are.
func (sh *shard) numberPlaces(ext uint32) int {
	w := &sh.work
	places := 0
	for i, a := range sh.Arenas.List() {
		if a != nil {
			w.base[i] = uint32(places)
			places += len(a.Mem) / int(ext)
		}
	}
	return places
}

// measure fills w.sizes and w.aligns for layout, and returns the bytes
// the entries that share arenas need, alignment slack included.
func (sh *shard) measure() int {
	w := &sh.work
	need := 0
	w.sizes = slices.Grow(w.sizes[:0], len(w.slots))
	w.aligns = slices.Grow(w.aligns[:0], len(w.slots))
	for _, i := range w.slots {
		sl := sh.Slots.At(i)
		w.sizes = append(w.sizes, sl.Size+uint32(sh.Overhead()))
		w.aligns = append(w.aligns, uint8(sl.AlignLog()))
		if !sh.OwnArena(sl) {
			need += int(sl.Size) + sh.Overhead() + sl.Align() - 1
		}
	}
	return need
}

// markVacated sets w.vacated[a] for every arena a all of whose entries the
// shuffle moves (w.leaving counts them)
// shuffle moves and whose free space is at most one extent at its top: the
// move loop leaves those arenas to be wiped and released whole, instead of
// wiping each entry's place and indexing it as free space that would only
// be taken out again when the arena goes.
func (sh *shard) markVacated() {
	w := &sh.work
	w.vacated = slices.Grow(w.vacated[:0], len(sh.Arenas.List()))[:len(sh.Arenas.List())]
	clear(w.vacated)
	w.tail = -1
	for i, a := range sh.Arenas.List() {
		if a == nil || a.Dedicated || a.Live == 0 || int(w.leaving[i]) != a.Live {
			continue
		}
		// Outside the current arena every byte is in an entry or in free;
		// in it, every byte below top. No free byte but the current arena's
		// bump space means the entries' places are all there is to clear.
		end := len(a.Mem)
		if a == sh.Arenas.Cur() {
			end = a.Top
		}
		if end != a.Bytes {
			continue
		}
		w.vacated[i] = true
		if a == sh.Arenas.Cur() && a.Top < len(a.Mem) {
			// Making a fresh arena current puts this space in free.
			w.tail = int(a.Top)
		}
	}
}

// moveAll moves the entries of ranks below placed to their places, in slot
// order: reads of the slots go forwards, writes land at random. Entries
// leaving a vacated arena are only copied; the others' places are wiped and
// become free space at once. It returns the bytes moved.
func (sh *shard) moveAll(placed int) uint64 {
	w := &sh.work
	var moved uint64
	ext := uint32(sh.Overhead())
	for k, r := range w.rank {
		if int(r) >= placed {
			continue
		}
		sl := sh.Slots.At(w.slots[k])
		dst, off := sh.dest(r)
		if w.vacated[sl.Arena()] {
			src := sh.Arenas.Get(sl.Arena()).Mem[sl.Off : sl.Off+sl.Size+ext]
			copy(dst.Mem[off:int(off)+len(src)], src)
			sl.SetArena(dst.Index)
			sl.Off = off
		} else {
			copy(dst.Mem[off:int(off)+int(sl.Size+ext)], sh.Extent(sl))
			osmem.Wipe(sh.Extent(sl))
			sh.vacate(sl)
			sl.SetArena(dst.Index)
			sl.Off = off
		}
		if w.per == 0 {
			// layoutUniform counts its arenas' entries itself.
			dst.Live++
			dst.Bytes += int(sl.Size + ext)
		}
		moved += uint64(sl.Size)
	}
	return moved
}

// moveBySource is moveAll for entries gather found on a grid, when all of
// them move: it walks the places they leave in address order, so that the
// reads of the old places, and of w.at or w.rank, go forwards, and only
// the writes to the new places land at random. The slots, which are in an
// order unrelated to the places, are updated afterwards in their own
// order.
func (sh *shard) moveBySource() uint64 {
	w := &sh.work
	if cap(w.to) < len(w.slots) {
		w.to = make([]uint64, len(w.slots))
	}
	w.to = w.to[:len(w.slots)]
	var q int
	sz := uint32(w.size)
	for i, a := range sh.Arenas.List() {
		if i >= len(w.leaving) || w.leaving[i] == 0 {
			continue
		}
		at := w.at[w.base[i]:][:len(a.Mem)/w.size]
		vacated := w.vacated[i]
		for j, k := range at {
			if k == 0 {
				continue
			}
			dst, off := sh.dest(w.rank[q])
			q++
			from := uint32(j) * sz
			copy(dst.Mem[off:off+sz], a.Mem[from:from+sz])
			if !vacated {
				// a may be released here, once its last entry is gone;
				// then no later place of it holds an entry.
				osmem.Wipe(a.Mem[from : from+sz])
				sh.vacate(sh.Slots.At(w.slots[k-1]))
			}
			w.to[k-1] = uint64(dst.Index)<<32 | uint64(off)
		}
	}
	for k, i := range w.slots {
		sl := sh.Slots.At(i)
		sl.SetArena(uint32(w.to[k] >> 32))
		sl.Off = uint32(w.to[k])
	}
	return uint64(q) * uint64(w.size-sh.Overhead())
}

// moveDense is moveBySource for dense places (see gather): the entry at
// place p goes to rank w.rank[p], so the move reads w.rank forwards, and
// the slots find their entry's rank from its old place, so that they need
// no array of new places written at random.
func (sh *shard) moveDense() uint64 {
	w := &sh.work
	sz := uint32(w.size)
	for i, a := range sh.Arenas.List() {
		if i >= len(w.leaving) || w.leaving[i] == 0 {
			continue
		}
		mem, vacated := a.Mem, w.vacated[i]
		for j, r := range w.rank[w.base[i]:][:w.leaving[i]] {
			dst, off := sh.dest(r)
			from := uint32(j) * sz
			copy(dst.Mem[off:off+sz], mem[from:from+sz])
			if !vacated {
				// a may be released here, once its last entry is gone.
				osmem.Wipe(mem[from : from+sz])
				sh.Arenas.Vacate(a, from, sz, nil)
			}
		}
	}
	n := 0
	for i := w.first; i < sh.Slots.Len(); i++ {
		sl := sh.Slots.At(i)
		if sl.State() != store.StateLive {
			continue
		}
		dst, off := sh.dest(w.rank[w.base[sl.Arena()]+sl.Off/sz])
		sl.SetArena(dst.Index)
		sl.Off = off
		n++
	}
	return uint64(n) * uint64(w.size-sh.Overhead())
}

// minInPlace (256, as the Shuffle doc says) is the fewest entries a shard
// holds for Shuffle to move them within the arenas they are in. An entry
// then keeps its place with probability 1/n, as any other place; in a
// shard of few entries that is often, and fresh arenas cost little there.
//
// minInPlaceSize is the smallest entry, tag included, moved in place. The
// moves in place follow the permutation from place to place, each a read
// at random; below this size that costs more than the fresh pages and the
// wipe it saves (measured: 64-byte entries shuffle faster into fresh
// arenas, 128-byte ones as fast either way, 256 bytes and up faster in
// place).
const (
	minInPlace     = 256
	minInPlaceSize = 128
)

// inPlaceFits reports whether the n entries gather found on a grid can be
// shuffled within their arenas: every arena is one the shuffle empties
// (no rented entry, no free space but the current arena's bump space),
// and none could be given back by packing the entries into fewer.
func (sh *shard) inPlaceFits(n int) bool {
	w := &sh.work
	if n < minInPlace || w.size < minInPlaceSize {
		return false
	}
	places, smallest := 0, len(w.at)
	for i, a := range sh.Arenas.List() {
		if a == nil {
			continue
		}
		if !w.vacated[i] {
			return false
		}
		c := len(a.Mem) / w.size
		places += c
		smallest = min(smallest, c)
	}
	return places-smallest < n
}

// shuffleInPlace moves the n entries gather found on a grid to the places
// of the same permutation Shuffle uses otherwise, numbered through the
// arenas they are already in (see gather), instead of into fresh arenas:
// no pages are mapped, faulted in, zeroed or unmapped, and every byte an
// entry leaves is overwritten by the next or wiped. It reports the bytes
// moved.
//
// The moves follow the permutation backwards. A chain starts at a new
// place no entry holds: the entry that goes there moves in, which empties
// its old place, and so on until an old place past the new layout is
// emptied, which is wiped. What is left are cycles among places that are
// both old and new; each is rotated through one spare place. When every
// place is taken, the spare is a region of one entry's size; when the
// system will not map one, each cycle is rotated a chunk at a time
// through the shard's keystream scratch, which is in the Shuffler's own
// locked region: so the shuffle in place needs no memory it may be
// refused.
func (sh *shard) shuffleInPlace(n int) uint64 {
	w := &sh.work
	sz := uint32(w.size)
	w.src = w.src[:0]
	for _, a := range sh.Arenas.List() {
		if a != nil {
			w.src = append(w.src, a)
		}
	}
	places := uint32(len(w.at))
	var spare []byte
	var spareReg *osmem.Region
	if places > uint32(n) {
		// Empty once the chains have emptied every old place past the new
		// layout.
		spare = w.place(uint32(n))
	} else {
		if r, err := sh.s.mapAux(int(sz)); err == nil {
			spareReg, spare = r, r.Data[:sz]
		}
	}
	// from[r] is the old place of the entry that goes to place r, and the
	// new place of each entry is noted by k in w.to.
	w.inv = growU32(w.inv, n)
	if cap(w.to) < len(w.slots) {
		w.to = make([]uint64, len(w.slots))
	}
	w.to = w.to[:len(w.slots)]
	from := w.inv
	q := 0
	for p, k := range w.at {
		if k == 0 {
			continue
		}
		r := w.rank[q]
		q++
		from[r] = uint32(p)
		a, off := w.placeIn(r)
		w.to[k-1] = uint64(a.Index)<<32 | uint64(off)
	}
	const done = ^uint32(0)
	nn := uint32(n)
	for d := range nn {
		if w.at[d] != 0 {
			continue // held at first: filled by a chain or a cycle
		}
		for {
			p := from[d]
			from[d] = done
			copy(w.place(d), w.place(p))
			if p >= nn {
				osmem.Wipe(w.place(p))
				break
			}
			d = p
		}
	}
	if spare == nil {
		sh.rotateCycles(from, done, w.size, w.place)
	}
	for d := range nn {
		p := from[d]
		if p == done {
			continue
		}
		from[d] = done
		if p == d {
			continue // the entry keeps its place
		}
		copy(spare, w.place(d))
		for c := d; ; {
			copy(w.place(c), w.place(p))
			c, p = p, from[p]
			from[c] = done
			if p == d {
				copy(w.place(c), spare)
				break
			}
		}
	}
	osmem.Wipe(spare)
	if spareReg != nil {
		_ = sh.s.aux.Unmap(spareReg)
	}
	for k, i := range w.slots {
		sl := sh.Slots.At(i)
		sl.SetArena(uint32(w.to[k] >> 32))
		sl.Off = uint32(w.to[k])
	}
	// The arenas now hold the places below n, in order, and the last of
	// them becomes the current arena. None is left empty: the last arena
	// has c places, and n is more than the places in all the others (see
	// inPlaceFits), so it holds at least one.
	var last *store.Arena
	for _, a := range w.src {
		start := w.base[a.Index]
		c := uint32(len(a.Mem)) / sz
		cnt := min(c, max(nn, start)-start)
		a.Live, a.Bytes = int(cnt), int(cnt*sz)
		a.Used = max(a.Used, a.Bytes)
		last = a
	}
	for _, a := range w.src {
		if a == last {
			a.Top = a.Bytes
		} else {
			a.Top = len(a.Mem)
			sh.Arenas.FreeSpace().Insert(a.Index, uint32(a.Bytes), uint32(len(a.Mem)-a.Bytes))
		}
	}
	// Every other arena's space is now an entry or free: making last the
	// current arena adds nothing to the index.
	sh.Arenas.SetCur(last)
	clear(w.vacated)
	return uint64(n) * uint64(w.size-sh.Overhead())
}

// rotateCycles rotates every cycle of from (see shuffleInPlace) that the
// chains left, each place c taking the size bytes of place from[c] (place
// returns a place's memory), without a spare place: a chunk of the
// shard's keystream scratch at a time, so each cycle is walked once per
// chunk of an entry. It marks the places it has filled done, and wipes
// the scratch.
func (sh *shard) rotateCycles(from []uint32, done uint32, size int, place func(uint32) []byte) {
	tmp := sh.scratch.KS[:]
	for d := range uint32(len(from)) {
		if p := from[d]; p == done || p == d {
			continue // filled by a chain, or the entry keeps its place
		}
		for o := 0; o < size; o += len(tmp) {
			k := min(len(tmp), size-o)
			copy(tmp[:k], place(d)[o:o+k])
			c := d
			for p := from[d]; p != d; c, p = p, from[p] {
				copy(place(c)[o:o+k], place(p)[o:o+k])
			}
			copy(place(c)[o:o+k], tmp[:k])
		}
		for c := d; from[c] != done; {
			next := from[c]
			from[c] = done
			c = next
		}
	}
	osmem.Wipe(tmp)
}

// placeIn returns the arena and offset of place p, numbered as gather
// numbers them, through w.src, the shard's arenas in order.
func (w *shuffleWork) placeIn(p uint32) (*store.Arena, uint32) {
	lo, hi := 0, len(w.src)-1
	for lo < hi {
		// The last arena starting at or before p.
		m := int(uint(lo+hi+1) >> 1)
		if w.base[w.src[m].Index] <= p {
			lo = m
		} else {
			hi = m - 1
		}
	}
	a := w.src[lo]
	return a, (p - w.base[a.Index]) * uint32(w.size)
}

// place returns the memory of place p.
func (w *shuffleWork) place(p uint32) []byte {
	a, off := w.placeIn(p)
	return a.Mem[off : off+uint32(w.size)]
}

// releaseVacated wipes and releases the arenas markVacated chose, now that
// no entry is left in them.
func (sh *shard) releaseVacated() {
	w := &sh.work
	for i, v := range w.vacated {
		if !v {
			continue
		}
		a := sh.Arenas.Get(uint32(i))
		osmem.Wipe(a.Mem[:a.Used])
		a.Live, a.Bytes = 0, 0
		if w.tail >= 0 && a != sh.Arenas.Cur() {
			if _, ok := sh.Arenas.FreeSpace().Remove(a.Index, uint32(w.tail)); ok {
				a.Top = len(a.Mem)
			}
		}
		// An arena the system will not take back stays mapped, all of it
		// free, and the next shuffle tries again.
		if sh.Arenas.Release(a, sh.regions.keep(sh, a)) != nil {
			if sh.Arenas.Cur() == a {
				// No longer current, it becomes one free extent.
				a.Top = 0
				sh.Arenas.SetCur(nil)
			} else {
				a.Top = len(a.Mem)
				sh.Arenas.FreeSpace().Insert(a.Index, 0, uint32(len(a.Mem)))
			}
		}
	}
	clear(w.vacated)
}

// layout places the entries, in rank order, in fresh arenas, and records
// each rank's destination. It returns how many ranks it placed.
func (sh *shard) layout(n, need int) (int, error) {
	w := &sh.work
	w.inv = growU32(w.inv, n)
	for k, r := range w.rank {
		w.inv[r] = uint32(k)
	}
	w.off = growU32(w.off, n)
	w.arena = growU32(w.arena, n)
	w.fresh, w.per = w.fresh[:0], 0
	var dst *store.Arena
	fresh := sh.freshLimits()
	for r := range n {
		k := w.inv[r]
		size, align := int(w.sizes[k]), 1<<w.aligns[k]
		if sh.Oversize(size, align) {
			// It gets an arena of its own, and dst goes on filling up.
			a, off, err := sh.Dedicated(size, align)
			if err != nil {
				return r, err
			}
			w.off[r], w.arena[r] = uint32(off), a.Index
			continue
		}
		off, ok := sh.Arenas.Fit(dst, size, align)
		if !ok {
			// Fresh arenas are sized for what is left to move, so a shuffle
			// maps few of them.
			a, err := sh.NewArena(fresh.round(max(min(need, fresh.most), size)))
			if err != nil {
				return r, err
			}
			dst = a
			sh.Arenas.SetCur(a)
			off, _ = sh.Arenas.Fit(dst, size, align)
		}
		need -= size + align - 1
		w.off[r], w.arena[r] = uint32(off), dst.Index
	}
	return n, nil
}

// hugeArena, two huge pages, is the smallest cap freshMax puts on fresh
// arenas.
const hugeArena = 4 << 20

// freshGranule is what a Shuffle rounds a shard's fresh arenas up to: a
// huge page, on every platform.
const freshGranule = 2 << 20

// freshLimits is what bounds the fresh arenas of a shard's Shuffle, from
// one look at the memory-lock limit.
type freshLimits struct {
	most  int  // the largest fresh arena (see freshMax)
	bound bool // the Shuffler locks and the limit holds it (see round)
}

func (sh *shard) freshLimits() freshLimits {
	lim := osmem.BindingLockLimit()
	return freshLimits{most: sh.freshMax(lim), bound: sh.s.cfg.locks() && lim >= 0}
}

// round rounds n, the size of a fresh arena, up to whole freshGranules
// where that adds at most a quarter and stays within most. Shards' arenas
// then come in few sizes, so the next shard can take the ones a shard
// empties (handOver) instead of mapping its own; and on Linux, where osmem
// aligns a region of a huge page or more to huge pages, all of such an
// arena is on them (secret memory excepted): the random writes of a
// shuffle into it miss the TLB far less, and it faults in 512 times fewer
// steps. The bytes added are the arena's free space for later entries.
//
// A Shuffle of a million 32-byte entries in four shards, whose fresh
// arenas of 7.6 MiB became 8 MiB, took 31-33 ns per entry instead of
// 49-51 (BenchmarkShuffleShards; bench/NOTES.md).
//
// Where the Shuffler's memory is locked and RLIMIT_MEMLOCK holds the
// process (bound), nothing is rounded: a fresh arena is never larger than
// it needs, so that what it does not need is room for another arena to be
// locked at all. As nobody under ulimit -l 8192, one shard of 6.5 MB of
// entries with WithArenaSize(2 << 20), rounded to 8 MiB, kept all of it
// unlocked after every Shuffle, where 6.8 MB stayed locked unrounded
// (TestShuffleRoundsNothingPastLockLimit).
func (f freshLimits) round(n int) int {
	if f.bound {
		return n
	}
	return granuleRound(n, f.most)
}

// granuleRound is round's arithmetic.
func granuleRound(n, most int) int {
	up := (n + freshGranule - 1) &^ (freshGranule - 1)
	if up-n > n/4 || up > most {
		return n
	}
	return up
}

// freshMax is the largest fresh arena a Shuffle of the shard maps, under
// lim, osmem.BindingLockLimit's answer. Where
// the process is held to RLIMIT_MEMLOCK and the Shuffler locks its memory,
// an arena sized for a whole shard past the limit could never be locked,
// and the shard's locked arenas, emptied, gave their room to nothing (12 MB
// in one shard under ulimit -l 8192 went from 7.9 MB locked to 4 KiB).
// Arenas of an eighth of the limit are locked as room appears, as the old
// ones go. Not smaller than hugeArena where the limit holds two of those:
// a Shuffle of a million 32-byte entries into 1 or 2 MiB arenas, which
// osmem then mapped on base pages, took 4 to 5 times as long as into
// 4 MiB ones (BenchmarkShuffle/entries=1000000/size=32 as nobody under
// ulimit -l 8192, alternating builds, two rounds: 218-276 ms against 52-53
// ms). A limit under eight of the smallest arenas locks nothing worth
// splitting a shard for: no cap then.
func (sh *shard) freshMax(lim int64) int {
	if !sh.s.cfg.locks() {
		return store.MaxArenaSize
	}
	switch {
	case lim < 0 || lim/8 < int64(sh.s.cfg.arenaSize):
		return store.MaxArenaSize
	case lim/2 >= hugeArena:
		return int(min(max(lim/8, hugeArena), store.MaxArenaSize))
	}
	return int(lim / 8)
}

// layoutUniform is layout for entries that all have one size, a multiple
// of their alignment: equal fresh arenas, and rank r's place is arithmetic.
func (sh *shard) layoutUniform(n, size int) (int, error) {
	w := &sh.work
	total := n * size
	w.fresh = w.fresh[:0]
	w.per = 0
	// Entries too large to share get an arena each, of just their size, by
	// the rule Alloc placed them by: all have one size and alignment, so
	// the first entry's answer is every entry's.
	big := sh.OwnArena(sh.Slots.At(w.first))
	fresh := sh.freshLimits()
	// Never below one entry: an entry larger than the cap still shares
	// arenas (it is not oversize), and an arena that holds none of them
	// places nothing, so the loop below would map arenas until the system
	// refused one.
	want := fresh.round(max(min(total, fresh.most), sh.s.cfg.arenaSize, size))
	if big {
		want = size
	}
	// The first arena may be a region the shard before emptied, up to a
	// sixteenth larger (see handOver).
	larger := 0
	if !fresh.bound {
		larger = want / 16
	}
	for placed := 0; placed < n; {
		if len(w.fresh) > 0 {
			// Every arena must hold w.per entries, as the first does,
			// whatever rounding the system applied to it, and no more:
			// space past them would be free space outside the current
			// arena, which keeps the arena from being vacated whole.
			want, larger = len(w.fresh[0].Mem), 0
		}
		a, err := sh.regions.arena(sh, want, larger)
		if err != nil {
			return placed, err
		}
		if w.per == 0 {
			w.per = len(a.Mem) / size
			w.size = size
		}
		a.Top = min(n-placed, w.per) * size
		a.Used = a.Top
		a.Live, a.Bytes = a.Top/size, a.Top
		placed += w.per
		w.fresh = append(w.fresh, a)
		if big {
			// A dedicated arena never becomes the current one: small
			// entries in its slack would keep it mapped after it empties.
			a.Dedicated = true
		} else {
			sh.Arenas.SetCur(a)
		}
	}
	return n, nil
}

// dest returns where rank r goes.
func (sh *shard) dest(r uint32) (*store.Arena, uint32) {
	w := &sh.work
	if len(w.fresh) == 1 {
		// The common case needs no division, which costs more here than the
		// rest of the arithmetic.
		return w.fresh[0], r * uint32(w.size)
	}
	if w.per > 0 {
		// Ranks and places fit in 32 bits, and a 32-bit division costs
		// less than a 64-bit one.
		i := r / uint32(w.per)
		return w.fresh[i], (r - i*uint32(w.per)) * uint32(w.size)
	}
	return sh.Arenas.Get(w.arena[r]), w.off[r]
}

// releaseEmpty releases every empty arena, the current one included, so a
// shard without entries maps nothing; those the operating system would not
// take back when they emptied get another try (see
// store.Shard.ReleaseEmpty), and arenas the system would not lock are
// locked if it now allows. An AEAD shard without entries lets go of its
// backup buffer too. It returns err, or else the first error of a release.
// Large shuffle scratch arrays are dropped.
func (sh *shard) releaseEmpty(err error, later *store.UnmapList) error {
	err = sh.releaseArenas(err, later)
	sh.work.trim()
	// A background cycle ends here, its moves done and the arenas they
	// emptied unmapped: the fresh arenas it had to take unlocked, at the
	// memory-lock limit, can be locked now rather than at the next cycle.
	sh.relock()
	return err
}

// releaseArenas is releaseEmpty without dropping the scratch arrays, for
// Shuffle, which hands them to the next shard.
func (sh *shard) releaseArenas(err error, later *store.UnmapList) error {
	if e := sh.ReleaseEmpty(later); err == nil {
		err = e
	}
	if sh.Counts.Live() == 0 && sh.backup != nil && !sh.rot.keepsBackup() {
		sh.dropBackup()
	}
	return err
}

// vacate takes an entry, already wiped, out of its arena, which is
// released if that leaves it empty and not current.
func (sh *shard) vacate(sl *store.Slot) {
	sh.Arenas.Vacate(sh.Arenas.Get(sl.Arena()), sl.Off, sl.Size+uint32(sh.Overhead()), nil)
}

// shuffleWork holds a shuffle's scratch arrays, indexed by k (entries in
// slot order) or r (entries in their new order).
type shuffleWork struct {
	slots, sizes []uint32       // by k
	aligns       []uint8        // by k, log2
	rank         []uint32       // k -> r
	inv          []uint32       // r -> k
	off, arena   []uint32       // by r: the destination (layout)
	fresh        []*store.Arena // equal fresh arenas (layoutUniform)
	per, size    int            // entries per fresh arena, entry size (layoutUniform)
	dense        bool           // places numbered by live entries (gather)
	first        uint32         // the first live slot (gather)
	vacated      []bool         // by arena index: emptied and released whole
	leaving      []uint32       // by arena index: entries the shuffle moves out
	tail         int            // the old current arena's top, if vacated, else -1
	src          []*store.Arena // the shard's arenas, in order (shuffleInPlace)
	base         []uint32       // by arena index: its first place (gather)
	at           []uint32       // by place: k+1 (gather)
	to           []uint64       // by k: new arena<<32 | offset (shuffleInPlace)
}

func (w *shuffleWork) reset() {
	w.slots, w.sizes, w.aligns = w.slots[:0], w.sizes[:0], w.aligns[:0]
}

// trim drops large scratch arrays so a Shuffler that is not shuffling does
// not hold memory for it; small ones are kept for the next shuffle.
func (w *shuffleWork) trim() {
	w.fresh = w.fresh[:0]
	if cap(w.rank) > 1<<16 {
		*w = shuffleWork{}
	}
}

// permutation returns a uniformly random permutation of 0..n-1, drawn by
// Fisher-Yates from the shard's ChaCha8 stream, in b's memory when it is
// large enough. Each step takes 32 random bits, two to a 64-bit draw, and
// maps them onto [0, k] by Lemire's multiply-and-reject method, which is
// exactly uniform.
func (sh *shard) permutation(b []uint32, n int) []uint32 { return permute(sh.rng, b, n) }

// permute is shard.permutation drawn from rng.
func permute(rng *mrand.Rand, b []uint32, n int) []uint32 {
	b = growU32(b, n)
	for k := range b {
		b[k] = uint32(k)
	}
	var pool uint64
	var have bool
	next := func() uint32 {
		if have {
			have = false
			return uint32(pool >> 32)
		}
		pool, have = rng.Uint64(), true
		return uint32(pool)
	}
	for k := n - 1; k > 0; k-- {
		bound := uint32(k + 1)
		m := uint64(next()) * uint64(bound)
		if uint32(m) < bound {
			// Values whose low half falls below 2^32 mod bound would make
			// some results more likely: draw again.
			for thresh := -bound % bound; uint32(m) < thresh; {
				m = uint64(next()) * uint64(bound)
			}
		}
		j := uint32(m >> 32)
		b[k], b[j] = b[j], b[k]
	}
	return b
}

func growU32(b []uint32, n int) []uint32 {
	if cap(b) < n {
		return make([]uint32, n)
	}
	return b[:n]
}

// handOver passes the regions of the arenas one shard's Shuffle emptied,
// wiped, to the next shard's, which makes its fresh arenas of them instead
// of mapping new ones: those would each be faulted in, zeroed and locked,
// and the old ones unlocked and unmapped, page by page (bench/NOTES.md
// has what it saves). A shard's first fresh arena may be a region up to a
// sixteenth larger than it asked for, since no two shards hold exactly as
// many entries, and the arena then has the region's size; not where the
// memory-lock limit holds a Shuffler that locks (see freshLimits.round). The
// regions the next shard does not take are unmapped once it lets go of
// its lock, or under it, before it maps a new region, when none has the
// size it needs; the last shard's with no shard lock held.
// The memory held at once is what it was without the hand-over: one
// shard's old arenas next to its new ones.
type handOver struct {
	take store.UnmapList // emptied by the shard before, for this one
	give store.UnmapList // emptied by this shard, for the next
	err  error           // the unmaps the system refused
}

// keep returns where arena a's region goes when released: to the next
// shard, or nil for an unmap now. A shard some of whose arenas the system
// would not lock unmaps its old ones at once, as before, so that relock
// can lock those in the room they leave.
func (h *handOver) keep(sh *shard, a *store.Arena) *store.UnmapList {
	if h == nil || a.Dedicated || (sh.s.cfg.lock != LockNone && sh.Arenas.Unlocked() > 0) {
		return nil
	}
	return &h.give
}

// arena makes a fresh arena for sh of a region the shard before emptied
// of n to n+larger bytes, or else of a new mapping of n bytes, once the
// regions that do not fit are unmapped.
func (h *handOver) arena(sh *shard, n, larger int) (*store.Arena, error) {
	if h != nil {
		if r := h.take.Take(n, n+larger); r != nil {
			a, err := sh.Arenas.Adopt(r)
			if err == nil {
				return a, nil
			}
			h.take = append(h.take, r) // still counted in the Aux
		}
		// None fits: they go before a new mapping, so that the memory held
		// at once, and locked, is no more than without the hand-over.
		h.unmapAll(&h.take, &sh.s.aux)
	}
	return sh.Arenas.Map(n)
}

// next unmaps the regions the shard just shuffled did not take, and makes
// the ones it emptied the next shard's to take. A shard that emptied none
// (it held no entry, or shuffled them in place) passes on what it was
// given. The caller holds no shard lock.
func (h *handOver) next(aux *store.Aux) {
	if len(h.give) == 0 {
		return
	}
	h.unmapAll(&h.take, aux)
	h.take, h.give = h.give, h.take
}

// unmap unmaps every region left. The caller holds no shard lock.
func (h *handOver) unmap(aux *store.Aux) {
	h.unmapAll(&h.take, aux)
	h.unmapAll(&h.give, aux)
}

// unmapAll unmaps the regions of l, keeping the errors for Shuffle.
func (h *handOver) unmapAll(l *store.UnmapList, aux *store.Aux) {
	h.err = errors.Join(h.err, l.UnmapAll(aux))
}
