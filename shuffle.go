package memshuffle

import (
	"errors"
	"slices"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
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

// Shuffle moves every unrented entry into freshly mapped arena space, in a
// random order, wipes the space each entry left, and returns arenas left
// empty to the operating system. Rented entries stay where they are. Entries
// move as ciphertext: nothing is decrypted. Shuffle locks one shard at a
// time, so operations on entries of other shards go on meanwhile.
//
// If the operating system refuses memory (or, with LockStrict, a lock)
// part-way, the entries moved so far stay moved, and the others are packed
// into the holes of the arenas that hold most, which releases the arenas
// they leave: Shuffle still gives memory back when it can map none. The
// error then wraps ErrOutOfMemory or ErrLockFailed. Every entry stays valid
// either way. Arenas the system would not lock when they were mapped are
// locked again if it now allows.
func (s *Shuffler) Shuffle() error {
	if s == nil || s.closed.Load() || len(s.shards) == 0 {
		return ErrClosed
	}
	start := time.Now()
	var errs []error
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.closed {
			sh.mu.Unlock()
			return ErrClosed
		}
		if err := sh.shuffle(); err != nil {
			errs = append(errs, err)
		}
		sh.mu.Unlock()
	}
	s.shuffles.Add(1)
	d := int64(time.Since(start))
	s.shuffleNanos.Add(d)
	storeMax(&s.shuffleMax, d)
	return errors.Join(errs...)
}

func (sh *shard) shuffle() error {
	sh.sweepExpired(nil)
	sh.relock()
	w := &sh.work
	w.reset()
	// Gather the entries to move in slot order: slots are mostly filled in
	// allocation order, so this and the moves below read memory forwards.
	need := 0
	w.slots = slices.Grow(w.slots, sh.live)
	w.sizes = slices.Grow(w.sizes, sh.live)
	w.aligns = slices.Grow(w.aligns, sh.live)
	uniform := true
	w.leaving = growU32(w.leaving, len(sh.arenas))
	clear(w.leaving)
	for i := range sh.nslots {
		if sl := sh.slot(i); sl.state() == stateLive {
			w.leaving[sl.arena]++
			w.slots = append(w.slots, i)
			w.sizes = append(w.sizes, sl.size+uint32(sh.ov))
			w.aligns = append(w.aligns, uint8(sl.meta&0x7))
			if !sh.oversize(int(sl.size)+sh.ov, sl.align()) {
				need += int(sl.size) + sh.ov + sl.align() - 1
			}
			uniform = uniform && sl.size+uint32(sh.ov) == w.sizes[0] && sl.meta&0x7 == uint32(w.aligns[0])
		}
	}
	n := len(w.slots)
	if n == 0 {
		return sh.releaseEmpty(nil, nil)
	}
	// rank[k] is where entry k lands in the new layout: a uniformly random
	// permutation (Fisher-Yates over a ChaCha8 stream seeded from
	// crypto/rand), so the new place of an entry says nothing about its old
	// one or about when it was made.
	w.rank = sh.permutation(w.rank, n)
	// The arenas every entry leaves, and what free space they hold, are
	// known before the layout makes a fresh arena the current one.
	sh.markVacated()
	size := int(w.sizes[0])
	uniform = uniform && size%(1<<w.aligns[0]) == 0
	// Which entry is where, found before the layout maps fresh arenas.
	bySource := uniform && sh.indexBySource(size)
	var err error
	var placed int
	if uniform {
		placed, err = sh.layoutUniform(n, size)
	} else {
		placed, err = sh.layout(n, need)
	}
	if placed < n {
		// Entries that stay keep their arenas: none is emptied in bulk.
		clear(w.vacated)
	}
	if bySource && placed == n {
		sh.s.bytesMoved.Add(sh.moveBySource(size))
	} else {
		sh.s.bytesMoved.Add(sh.moveAll(placed))
	}
	sh.releaseVacated()
	if err != nil {
		// Without fresh arenas, compact into the holes of those that stay,
		// which releases the ones it empties.
		sh.squeeze()
	}
	return sh.releaseEmpty(err, nil)
}

// markVacated sets w.vacated[a] for every arena a all of whose entries the
// shuffle moves (w.leaving counts them)
// shuffle moves and whose free space is at most one extent at its top: the
// move loop leaves those arenas to be wiped and released whole, instead of
// wiping each entry's place and indexing it as free space that would only
// be taken out again when the arena goes.
func (sh *shard) markVacated() {
	w := &sh.work
	w.vacated = slices.Grow(w.vacated[:0], len(sh.arenas))[:len(sh.arenas)]
	clear(w.vacated)
	w.tail = -1
	for i, a := range sh.arenas {
		if a == nil || a.dedicated || a.live == 0 || int(w.leaving[i]) != a.live {
			continue
		}
		// Outside the current arena every byte is in an entry or in free;
		// in it, every byte below top. No free byte but the current arena's
		// bump space means the entries' places are all there is to clear.
		end := len(a.mem)
		if a == sh.cur {
			end = a.top
		}
		if end != a.bytes {
			continue
		}
		w.vacated[i] = true
		if a == sh.cur && a.top < len(a.mem) {
			// Making a fresh arena current puts this space in free.
			w.tail = int(a.top)
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
	ext := uint32(sh.ov)
	for k, r := range w.rank {
		if int(r) >= placed {
			continue
		}
		sl := sh.slot(w.slots[k])
		dst, off := sh.dest(r)
		if w.vacated[sl.arena] {
			src := sh.arenas[sl.arena].mem[sl.off : sl.off+sl.size+ext]
			copy(dst.mem[off:int(off)+len(src)], src)
			sl.arena, sl.off = dst.index, off
		} else {
			copy(dst.mem[off:int(off)+int(sl.size+ext)], sh.extent(sl))
			osmem.Wipe(sh.extent(sl))
			sh.vacate(sl, nil)
			sl.arena, sl.off = dst.index, off
		}
		if w.per == 0 {
			// layoutUniform counts its arenas' entries itself.
			dst.live++
			dst.bytes += int(sl.size + ext)
		}
		moved += uint64(sl.size)
	}
	return moved
}

// indexBySource records, for entries of one size that all sit on a grid of
// that size, which entry is at each place of the arenas they leave, and
// where it goes: w.at[w.base[a]+off/size] is (slot+1)<<32 | rank for the
// entry at off in arena a, 0 for a place no moving entry holds. It reports
// false, and leaves the moves to go in slot order, when an entry is off the
// grid or the arenas have many times more places than entries.
func (sh *shard) indexBySource(size int) bool {
	w := &sh.work
	w.src = w.src[:0]
	w.base = growU32(w.base, len(sh.arenas))
	places := 0
	for i, a := range sh.arenas {
		if a != nil && w.leaving[i] > 0 {
			w.base[i] = uint32(places)
			w.src = append(w.src, a)
			places += len(a.mem) / size
		}
	}
	if places > 4*len(w.slots) {
		return false
	}
	if cap(w.at) < places {
		w.at = make([]uint64, places)
	}
	w.at = w.at[:places]
	clear(w.at)
	sz := uint32(size)
	for k, i := range w.slots {
		sl := sh.slot(i)
		if sl.off%sz != 0 {
			return false
		}
		w.at[w.base[sl.arena]+sl.off/sz] = uint64(i+1)<<32 | uint64(w.rank[k])
	}
	return true
}

// moveBySource is moveAll for entries indexBySource found on a grid, when
// all of them move: it walks the places they leave in address order, so
// that the reads of the old places and of w.at go forwards, and only the
// writes to the new places and to the slots land at random. The order of
// the moves does not change where each entry goes.
func (sh *shard) moveBySource(size int) uint64 {
	w := &sh.work
	var moved uint64
	sz := uint32(size)
	for _, a := range w.src {
		at := w.at[w.base[a.index]:][:len(a.mem)/size]
		vacated := w.vacated[a.index]
		for j, e := range at {
			if e == 0 {
				continue
			}
			sl := sh.slot(uint32(e>>32) - 1)
			dst, off := sh.dest(uint32(e))
			from := uint32(j) * sz
			copy(dst.mem[off:off+sz], a.mem[from:from+sz])
			if !vacated {
				// a may be released here, once its last entry is gone;
				// then no later place of it holds an entry.
				osmem.Wipe(a.mem[from : from+sz])
				sh.vacate(sl, nil)
			}
			// Only stores to the slot: it is at a random place, and a load
			// from it would wait for memory.
			sl.arena, sl.off = dst.index, off
			moved++
		}
	}
	return moved * uint64(size-sh.ov)
}

// releaseVacated wipes and releases the arenas markVacated chose, now that
// no entry is left in them.
func (sh *shard) releaseVacated() {
	w := &sh.work
	for i, v := range w.vacated {
		if !v {
			continue
		}
		a := sh.arenas[i]
		osmem.Wipe(a.mem[:a.used])
		a.live, a.bytes = 0, 0
		if w.tail >= 0 && a != sh.cur {
			if _, ok := sh.free.Remove(a.index, uint32(w.tail)); ok {
				a.top = len(a.mem)
			}
		}
		// An arena the system will not take back stays mapped, all of it
		// free, and the next shuffle tries again.
		if sh.release(a, nil) != nil {
			if sh.cur == a {
				sh.cur = nil
			}
			a.top = len(a.mem)
			sh.free.Insert(a.index, 0, uint32(len(a.mem)))
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
	var dst *arena
	for r := range n {
		k := w.inv[r]
		size, align := int(w.sizes[k]), 1<<w.aligns[k]
		if sh.oversize(size, align) {
			// It gets an arena of its own, and dst goes on filling up.
			a, off, err := sh.dedicated(size, align)
			if err != nil {
				return r, err
			}
			w.off[r], w.arena[r] = uint32(off), a.index
			continue
		}
		off, ok := sh.fit(dst, size, align)
		if !ok {
			// Fresh arenas are sized for what is left to move, so a shuffle
			// maps few of them.
			a, err := sh.newArena(max(min(need, maxArenaSize), size))
			if err != nil {
				return r, err
			}
			dst = a
			sh.setCur(a)
			off, _ = sh.fit(dst, size, align)
		}
		need -= size + align - 1
		w.off[r], w.arena[r] = uint32(off), dst.index
	}
	return n, nil
}

// hugeArena is the smallest region osmem maps on transparent huge pages
// (where Linux has them): two huge pages.
const hugeArena = 4 << 20

// layoutUniform is layout for entries that all have one size, a multiple
// of their alignment: equal fresh arenas, and rank r's place is arithmetic.
func (sh *shard) layoutUniform(n, size int) (int, error) {
	w := &sh.work
	total := n * size
	w.fresh = w.fresh[:0]
	w.per = 0
	// Entries too large to share get an arena each, of just their size.
	big := sh.oversize(size, 1)
	want := max(min(total, maxArenaSize), sh.s.cfg.arenaSize)
	if want < hugeArena && want >= hugeArena/5*4 {
		// Rounded up to where arenas sit on huge pages, which fault in 512
		// times fewer steps and keep the random writes below from missing
		// the TLB, for at most a quarter more memory.
		want = hugeArena
	}
	if big {
		want = size
	}
	for placed := 0; placed < n; {
		if len(w.fresh) > 0 {
			// Every arena must hold w.per entries, as the first does; that
			// one may be a larger spare the background shuffler mapped.
			want = len(w.fresh[0].mem)
		}
		a, err := sh.mapArena(want)
		if err != nil {
			return placed, err
		}
		if w.per == 0 {
			w.per = len(a.mem) / size
			w.size = size
		}
		a.top = min(n-placed, w.per) * size
		a.used = a.top
		a.live, a.bytes = a.top/size, a.top
		placed += w.per
		w.fresh = append(w.fresh, a)
		if big {
			// A dedicated arena never becomes the current one: small
			// entries in its slack would keep it mapped after it empties.
			a.dedicated = true
		} else {
			sh.setCur(a)
		}
	}
	return n, nil
}

// dest returns where rank r goes.
func (sh *shard) dest(r uint32) (*arena, uint32) {
	w := &sh.work
	if len(w.fresh) == 1 {
		// The common case needs no division, which costs more here than the
		// rest of the arithmetic.
		return w.fresh[0], r * uint32(w.size)
	}
	if w.per > 0 {
		i := int(r) / w.per
		return w.fresh[i], uint32((int(r) - i*w.per) * w.size)
	}
	return sh.arenas[w.arena[r]], w.off[r]
}

// releaseEmpty releases every empty arena, the current one included, so a
// shard without entries maps nothing; those the operating system would not
// take back when they emptied get another try. An AEAD shard without
// entries lets go of its backup buffer too. Released arenas go to later,
// if not nil, to be unmapped once the caller lets go of the lock.
func (sh *shard) releaseEmpty(err error, later *unmapList) error {
	for _, a := range sh.arenas {
		if a != nil && a.live == 0 {
			if e := sh.release(a, later); e != nil && err == nil {
				err = e
			}
		}
	}
	if sh.live == 0 && sh.backup != nil {
		sh.dropBackup()
	}
	sh.work.trim()
	return err
}

// shuffleWork holds a shuffle's scratch arrays, indexed by k (entries in
// slot order) or r (entries in their new order).
type shuffleWork struct {
	slots, sizes []uint32 // by k
	aligns       []uint8  // by k, log2
	rank         []uint32 // k -> r
	inv          []uint32 // r -> k
	off, arena   []uint32 // by r: the destination (layout)
	fresh        []*arena // equal fresh arenas (layoutUniform)
	per, size    int      // entries per fresh arena, entry size (layoutUniform)
	vacated      []bool   // by arena index: emptied and released whole
	leaving      []uint32 // by arena index: entries the shuffle moves out
	tail         int      // the old current arena's top, if vacated, else -1
	src          []*arena // arenas entries leave (indexBySource)
	base         []uint32 // by arena index: its first place (indexBySource)
	at           []uint64 // by place: slot+1 and rank (indexBySource)
}

func (w *shuffleWork) reset() {
	w.slots, w.sizes, w.aligns = w.slots[:0], w.sizes[:0], w.aligns[:0]
}

// trim drops large scratch arrays so a Shuffler that is not shuffling does
// not hold memory for it; small ones are kept for the next shuffle.
func (w *shuffleWork) trim() {
	w.fresh = w.fresh[:0]
	if cap(w.slots) > 1<<16 {
		*w = shuffleWork{}
	}
}

// permutation returns a uniformly random permutation of 0..n-1, drawn by
// Fisher-Yates from the shard's ChaCha8 stream, in b's memory when it is
// large enough.
func (sh *shard) permutation(b []uint32, n int) []uint32 {
	b = growU32(b, n)
	for k := range b {
		b[k] = uint32(k)
	}
	for k := n - 1; k > 0; k-- {
		j := sh.rng.IntN(k + 1)
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

// sweep moves up to n unrented entries that are not in the current arena
// into it, continuing where the last sweep stopped.
func (sh *shard) sweep(n int) {
	var moved uint64
	for range min(n, int(sh.nslots)) {
		if sh.cursor >= sh.nslots {
			sh.cursor = 0
		}
		sl := sh.slot(sh.cursor)
		sh.cursor++
		if sh.oversize(int(sl.size)+sh.ov, sl.align()) {
			// Alone in its arena already: moving it compacts nothing.
			continue
		}
		m, ok := sh.relocate(sl, nil)
		moved += m
		if !ok {
			break
		}
	}
	sh.s.bytesMoved.Add(moved)
}
