package memshuffle

import (
	"errors"
	"time"
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
// If the operating system refuses memory part-way, the entries moved so far
// stay moved, the others stay where they were, and the error wraps
// ErrOutOfMemory. Every entry stays valid either way.
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
	s.shuffleNanos.Add(int64(time.Since(start)))
	return errors.Join(errs...)
}

func (sh *shard) shuffle() error {
	order := sh.order[:0]
	need := 0
	for i := range sh.nslots {
		if sl := sh.slot(i); sl.state() == stateLive {
			order = append(order, i)
			need += int(sl.size) + sl.align() - 1
		}
	}
	// Fisher-Yates with a ChaCha8 stream seeded from crypto/rand: where
	// each entry lands cannot be predicted from where it was.
	for i := len(order) - 1; i > 0; i-- {
		j := sh.rng.IntN(i + 1)
		order[i], order[j] = order[j], order[i]
	}
	sh.order = order

	var err error
	var dst *arena
	for _, i := range order {
		sl := sh.slot(i)
		size, align := int(sl.size), sl.align()
		off, ok := fit(dst, size, align)
		if !ok {
			// Fresh arenas are sized for what is left to move, so a shuffle
			// maps few of them.
			a, e := sh.newArena(max(min(need, maxArenaSize), size))
			if e != nil {
				err = e
				break
			}
			prev := dst
			dst = a
			sh.cur = a
			if prev != nil && prev.live == 0 {
				_ = sh.release(prev)
			}
			off, _ = fit(dst, size, align)
		}
		need -= size + align - 1
		sh.move(sl, dst, off)
	}
	// Arenas emptied above were released as they emptied; retry any the
	// operating system would not take back then.
	for _, a := range sh.arenas {
		if a != nil && a.live == 0 && a != sh.cur {
			if e := sh.release(a); e != nil && err == nil {
				err = e
			}
		}
	}
	return err
}

// sweep moves up to n unrented entries that are not in the current arena
// into it, continuing where the last sweep stopped.
func (sh *shard) sweep(n int) {
	for range n {
		if sh.nslots == 0 {
			return
		}
		if sh.cursor >= sh.nslots {
			sh.cursor = 0
		}
		sl := sh.slot(sh.cursor)
		sh.cursor++
		if sl.state() != stateLive || sh.arenas[sl.arena] == sh.cur {
			continue
		}
		a, off, err := sh.place(int(sl.size), sl.align())
		if err != nil {
			return
		}
		sh.move(sl, a, off)
	}
}
