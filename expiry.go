package memshuffle

import (
	"fmt"
	"math"
	"time"
)

// WithDefaultTTL gives every new entry an expiry ttl after its allocation;
// see [Shuffler.SetExpiry]. Expiries are kept as int64 Unix nanoseconds, so
// New rejects, with ErrInvalidOption, a ttl that takes an entry allocated
// now past April 2262 (about 236 years from 2026).
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
// every access checks, and Shuffle and the background shuffler sweep
// expired entries. An entry rented or viewed when it expires is wiped when
// the last borrower returns it, and that Return reports ErrExpired. Free of
// an expired handle recycles its slot.
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
		if sl.meta&flagExpiry != 0 {
			delete(sh.expiry, h.slot())
			sl.meta &^= flagExpiry
		}
		return nil
	}
	sh.setExpiry(h.slot(), sl, unixNanos(t))
	if sh.due(h.slot()) {
		sh.expire(h.slot(), sl)
	}
	return nil
}

// Expiry reports the entry's expiry, or the zero Time if it has none.
func (s *Shuffler) Expiry(h Handle) (time.Time, error) {
	sh, sl, err := s.lookupLive(h)
	if err != nil {
		return time.Time{}, err
	}
	defer sh.mu.Unlock()
	if sl.meta&flagExpiry == 0 {
		return time.Time{}, nil
	}
	return time.Unix(0, sh.expiry[h.slot()]), nil
}

// The first and last instants int64 Unix nanoseconds can say.
var (
	firstDeadline = time.Unix(0, math.MinInt64)
	lastDeadline  = time.Unix(0, math.MaxInt64)
)

// unixNanos is t in Unix nanoseconds, saturated: time.Time.UnixNano wraps
// outside the int64 range, which would make a far-future expiry expire at
// once and a far-past one never.
func unixNanos(t time.Time) int64 {
	switch {
	case t.After(lastDeadline):
		return math.MaxInt64
	case t.Before(firstDeadline):
		return math.MinInt64
	}
	return t.UnixNano()
}

// deadlineAfter is now plus ttl (positive) in Unix nanoseconds, saturated.
func deadlineAfter(ttl time.Duration) int64 {
	now := time.Now().UnixNano()
	if int64(ttl) > math.MaxInt64-now {
		return math.MaxInt64
	}
	return now + int64(ttl)
}

func (sh *shard) setExpiry(i uint32, sl *slot, deadline int64) {
	if sh.expiry == nil {
		sh.expiry = make(map[uint32]int64)
	}
	sh.expiry[i] = deadline
	sl.meta |= flagExpiry
}

// due reports whether slot i's expiry has passed.
func (sh *shard) due(i uint32) bool {
	d, ok := sh.expiry[i]
	return ok && time.Now().UnixNano() >= d
}

// expire wipes a live entry whose time has come and leaves its slot as a
// tombstone that answers ErrExpired. A borrowed entry is left to the
// return that ends its borrow.
func (sh *shard) expire(i uint32, sl *slot) {
	if sl.state() != stateLive {
		return
	}
	sh.drop(sl)
	sh.tombstone(i, sl)
}

// tombstone marks a vacated slot expired.
func (sh *shard) tombstone(i uint32, sl *slot) {
	delete(sh.expiry, i)
	sl.meta &^= flagExpiry
	sl.setState(stateExpired)
	sl.ctr, sl.size, sl.off, sl.arena = 0, 0, 0, 0
	sh.s.expired.Add(1)
}

// sweepExpired expires every due entry of the shard.
func (sh *shard) sweepExpired() {
	if len(sh.expiry) == 0 {
		return
	}
	now := time.Now().UnixNano()
	for i, d := range sh.expiry {
		if now >= d {
			sh.expire(i, sh.slot(i))
		}
	}
}
