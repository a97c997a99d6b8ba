package memshuffle

import (
	"fmt"
	"math"
	"time"

	"github.com/memshuffle/memshuffle/internal/store"
)

// WithDefaultTTL gives every new entry an expiry ttl after its allocation;
// see [Shuffler.SetExpiry]. New rejects, with ErrInvalidOption, a ttl of
// zero or less, and, since expiries are kept as int64 Unix nanoseconds, a
// ttl that takes an entry allocated now past April 2262 (about 236 years
// from 2026).
//
// The calls that make an entry and fill it (Random, ReadFrom, ReadAll,
// ReadUntil, ReadPrivateKey, CopyFrom, Clone) give it the TTL when they
// make it: one that takes longer than ttl to fill it, on a loaded machine
// or with a slow reader, fails with ErrExpired, with the entry wiped and
// freed.
func WithDefaultTTL(ttl time.Duration) Option {
	return optionFunc(func(c *config) error {
		if ttl <= 0 {
			return fmt.Errorf("%w: WithDefaultTTL(%v): want a positive duration", ErrInvalidOption, ttl)
		}
		if deadlineAfter(ttl) == math.MaxInt64 {
			return fmt.Errorf("%w: WithDefaultTTL(%v): expiries after %v cannot be kept", ErrInvalidOption, ttl, lastDeadline.UTC())
		}
		c.ttl = ttl
		return nil
	})
}

// SetExpiry makes the entry expire at t; the zero Time removes an expiry.
// Once t has passed, the entry is wiped and its handle answers ErrExpired:
// every access checks, and Alloc (a few at a time), Shuffle and the
// background shuffler sweep expired entries, so a Shuffler that allocates
// does not keep their memory. An entry rented or viewed when it expires
// is wiped when the last borrower returns it; each borrower's Return or
// ReturnView reports ErrExpired, the last one's included, as every call
// with the handle does from then on. Until then a call that does not
// match the borrow (ReturnView of a rented entry, Return of a viewed one)
// still answers ErrNotRented, and Free ErrBusy. Free of an expired handle recycles
// its slot, 24 bytes of the Go heap and up to 4 more of the table of
// deadlines, which nothing else does: a program that drops the handles of
// entries it let expire should Free them. One that dropped 8.7 million in
// 5 minutes of churn held 211 MB of slots and about 37 MB of that table,
// and its arenas mapped 1.46 to 1.75 times its live bytes, against 1.06 to
// 1.21 for the same churn with the handles freed.
//
// Expiries are kept as int64 Unix nanoseconds: a t after April 2262 is kept
// as the last instant they can say, which Expiry then reports, and a t
// before September 1677 as the first, which has passed.
func (s *Shuffler) SetExpiry(h Handle, t time.Time) error {
	sh, sl, err := s.lookupLive(h)
	if err != nil {
		return err
	}
	defer sh.mu.Unlock()
	if t.IsZero() {
		sh.Expiries.Clear(h.slot())
		return nil
	}
	sh.Expiries.Set(h.slot(), unixNanos(t))
	if !sh.expired(h.slot(), sl, nil) && sl.State() != store.StateLive {
		// Borrowed: its waiters sleep until a deadline they read before
		// this one, if any (see borrowWaiting).
		sh.wakeExpired(h.slot(), sl)
	}
	return nil
}

// Expiry reports the entry's expiry, or the zero Time if it has none. It
// fails with ErrInvalidHandle for a freed, forged or another Shuffler's
// handle, ErrExpired for an entry whose expiry passed, and ErrClosed after
// Close or Purge.
func (s *Shuffler) Expiry(h Handle) (time.Time, error) {
	sh, _, err := s.lookupLive(h)
	if err != nil {
		return time.Time{}, err
	}
	defer sh.mu.Unlock()
	d, ok := sh.Expiries.Get(h.slot())
	if !ok {
		return time.Time{}, nil
	}
	return time.Unix(0, d), nil
}

// now is the Shuffler's clock, in Unix nanoseconds: the system's, unless a
// test gave it another.
func (s *Shuffler) now() int64 {
	if s.cfg.now != nil {
		return s.cfg.now()
	}
	return time.Now().UnixNano()
}

// The first and last instants int64 Unix nanoseconds can say.
var (
	firstDeadline = time.Unix(0, math.MinInt64)
	lastDeadline  = time.Unix(0, math.MaxInt64)
)

// unixNanos is t in Unix nanoseconds, saturated: time.Time.UnixNano wraps
// outside the int64 range, which would make a far-future expiry expire at
// once and a far-past one never. It compares t's Unix seconds, not t
// itself: time.Unix(math.MaxInt64, 0), a common way to say "never",
// wraps the seconds since year 1 that Time keeps and compares as before
// year 1 (Before and After), while Unix and String read it as the year
// 292277026596.
func unixNanos(t time.Time) int64 {
	sec, ns := t.Unix(), t.Nanosecond()
	switch {
	case sec > lastDeadline.Unix() || sec == lastDeadline.Unix() && ns > lastDeadline.Nanosecond():
		return math.MaxInt64
	case sec < firstDeadline.Unix() || sec == firstDeadline.Unix() && ns < firstDeadline.Nanosecond():
		return math.MinInt64
	}
	return t.UnixNano()
}

// deadlineAfter is the system clock plus ttl (positive) in Unix
// nanoseconds, saturated; New checks WithDefaultTTL against it.
func deadlineAfter(ttl time.Duration) int64 { return addNanos(time.Now().UnixNano(), ttl) }

// addNanos is now plus ttl (positive), saturated at the last instant.
func addNanos(now int64, ttl time.Duration) int64 {
	// now > MaxInt64-ttl, not ttl > MaxInt64-now: with a clock before
	// 1970 that difference wraps, and every deadline became the last
	// instant.
	if now > math.MaxInt64-int64(ttl) {
		return math.MaxInt64
	}
	return now + int64(ttl)
}

// expired is the one place an entry's expiry is tested. It reports whether
// slot i's handle answers ErrExpired now: its entry has been wiped at its
// deadline, or the deadline has passed. A live entry whose deadline has
// passed is wiped here, releasing an arena it empties as Arenas.Release does with
// later; a borrowed one is left to the return that ends its borrow (see
// shard.seal), which wipes it with expire. The clock is read only for an
// entry that has a deadline, which keeps it off every other lookup.
func (sh *shard) expired(i uint32, sl *store.Slot, later *store.UnmapList) bool {
	switch sl.State() {
	case store.StateExpired:
		return true
	case store.StateFree:
		return false
	}
	// A held deadline was found due once: it stays so, though a wall
	// clock stepped back since says otherwise.
	if d, ok := sh.Expiries.Get(i); !ok || sh.s.now() < d && !sh.Expiries.Held(i) {
		return false
	}
	if sl.State() == store.StateLive {
		sh.expire(i, sl, later)
	} else {
		// Answered due once, it stays due for the return to wipe, though
		// the clock steps back before it.
		sh.Expiries.Hold(i)
		sh.wakeExpired(i, sl)
	}
	return true
}

// wakeExpired wakes the goroutines waiting to borrow slot i's borrowed
// entry, whose deadline was just found due, or set: they answer ErrExpired
// now, or sleep again until the new deadline, where they slept on until
// the borrow ended, or their context did.
func (sh *shard) wakeExpired(i uint32, sl *store.Slot) {
	sh.Waiters.Wake(makeHandle(sh.s.id, sh.index, i, sl.Gen()).id)
}

// expire wipes an entry whose time has come, live or at the end of its
// borrow, and leaves its slot as a tombstone that answers ErrExpired.
func (sh *shard) expire(i uint32, sl *store.Slot, later *store.UnmapList) {
	sh.Drop(sl, later)
	sh.Expiries.Clear(i)
	sl.SetState(store.StateExpired)
	sl.SetCtr(0)
	sl.SetArena(0)
	sl.Size, sl.Off = 0, 0
	sh.s.tally.expired.Add(1)
}

// sweepExpired wipes every live entry of the shard whose deadline has
// passed: sweepSome with no bound.
func (sh *shard) sweepExpired(later *store.UnmapList) {
	sh.sweepSome(later, sh.s.now(), math.MaxInt, math.MaxInt)
}

// An allocation in a shard with deadlines wipes at most allocSweepEntries
// expired entries, or about allocSweepBytes of them; one the system
// refused memory for, at most refusedSweepEntries, or about
// refusedSweepBytes or its own size, whichever is more, before it tries
// again. Each wipe costs O(log n) in the shard's n deadlines, so both hold
// the shard lock for a bounded time.
const (
	allocSweepEntries   = 16
	allocSweepBytes     = 256 << 10
	refusedSweepEntries = 1024
	refusedSweepBytes   = 1 << 20
)

// sweepSome is sweepExpired for a caller that must hold the shard lock for
// a bounded time however many entries expire at once (a background step,
// an allocation): it stops once it has wiped bytes of data or n entries
// (at least one entry), and reports what it wiped and whether it got
// through every entry due at now.
func (sh *shard) sweepSome(later *store.UnmapList, now int64, bytes, n int) (wipedBytes, wiped int, done bool) {
	done = sh.Expiries.DueUntil(now, func(i uint32) bool {
		if wipedBytes >= bytes || wiped >= n {
			return false
		}
		// A borrowed entry is left to its return, and held (see
		// store.Expiries) so that later sweeps pass it over. A live one
		// is wiped as it is, not through expired, which would read the
		// clock again: a wall clock that stepped back in between would
		// leave it live, with its deadline held, where no sweep looks.
		if sl := sh.Slots.At(i); sl.State() == store.StateLive {
			wipedBytes += int(sl.Size)
			wiped++
			sh.expire(i, sl, later)
		} else {
			sh.wakeExpired(i, sl)
		}
		return true
	})
	return wipedBytes, wiped, done
}
