package memshuffle

import (
	"errors"
	"slices"
	"time"

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
	w.slots = slices.Grow(w.slots, sh.Counts.Live())
	w.sizes = slices.Grow(w.sizes, sh.Counts.Live())
	w.aligns = slices.Grow(w.aligns, sh.Counts.Live())
	uniform := true
	for i := range sh.Slots.Len() {
		if sl := sh.Slots.At(i); sl.State() == store.StateLive {
			w.slots = append(w.slots, i)
			w.sizes = append(w.sizes, sl.Size+uint32(sh.Overhead()))
			w.aligns = append(w.aligns, sl.AlignLog())
			if !sh.Oversize(int(sl.Size)+sh.Overhead(), sl.Align()) {
				need += int(sl.Size) + sh.Overhead() + sl.Align() - 1
			}
			uniform = uniform && sl.Size+uint32(sh.Overhead()) == w.sizes[0] && sl.AlignLog() == w.aligns[0]
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
	var err error
	var placed int
	if size := int(w.sizes[0]); uniform && size%(1<<w.aligns[0]) == 0 {
		placed, err = sh.layoutUniform(n, size)
	} else {
		placed, err = sh.layout(n, need)
	}
	// Move in slot order: reads of the slots go forwards, writes land at
	// random.
	var moved uint64
	for k, r := range w.rank {
		if int(r) < placed {
			a, off := sh.dest(r)
			moved += sh.Move(sh.Slots.At(w.slots[k]), a, int(off), nil)
		}
	}
	sh.s.bytesMoved.Add(moved)
	if err != nil {
		// Without fresh arenas, compact into the holes of those that stay,
		// which releases the ones it empties.
		sh.Squeeze(sh.s.cfg.lock != LockNone)
	}
	return sh.releaseEmpty(err, nil)
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
			a, err := sh.NewArena(max(min(need, store.MaxArenaSize), size))
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

// layoutUniform is layout for entries that all have one size, a multiple
// of their alignment: equal fresh arenas, and rank r's place is arithmetic.
func (sh *shard) layoutUniform(n, size int) (int, error) {
	w := &sh.work
	total := n * size
	w.fresh = w.fresh[:0]
	w.per = 0
	// Entries too large to share get an arena each, of just their size.
	big := sh.Oversize(size, 1)
	want := max(min(total, store.MaxArenaSize), sh.s.cfg.arenaSize)
	if big {
		want = size
	}
	for placed := 0; placed < n; {
		if len(w.fresh) > 0 {
			// Every arena must hold w.per entries, as the first does,
			// whatever rounding the system applied to it.
			want = len(w.fresh[0].Mem)
		}
		a, err := sh.Arenas.Map(want)
		if err != nil {
			return placed, err
		}
		if w.per == 0 {
			w.per = len(a.Mem) / size
			w.size = size
		}
		a.Top = min(n-placed, w.per) * size
		a.Used = a.Top
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
	if w.per > 0 {
		i := int(r) / w.per
		return w.fresh[i], uint32((int(r) - i*w.per) * w.size)
	}
	return sh.Arenas.Get(w.arena[r]), w.off[r]
}

// releaseEmpty releases every empty arena, the current one included, so a
// shard without entries maps nothing; those the operating system would not
// take back when they emptied get another try (see
// store.Shard.ReleaseEmpty). An AEAD shard without entries lets go of its
// backup buffer too. It returns err, or else the first error of a release.
func (sh *shard) releaseEmpty(err error, later *store.UnmapList) error {
	if e := sh.ReleaseEmpty(later); err == nil {
		err = e
	}
	if sh.Counts.Live() == 0 && sh.backup != nil {
		sh.dropBackup()
	}
	sh.work.trim()
	return err
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
