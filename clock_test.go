package memshuffle

import (
	"sync/atomic"
	"time"
)

// testClock is a clock a test moves by hand, for expiries: the Shuffler
// reads it wherever it would read the system clock to test a deadline.
type testClock struct{ ns atomic.Int64 }

// newTestClock returns a clock that reads at, until advanced.
func newTestClock(at time.Time) *testClock {
	c := &testClock{}
	c.ns.Store(at.UnixNano())
	return c
}

func (c *testClock) now() int64              { return c.ns.Load() }
func (c *testClock) time() time.Time         { return time.Unix(0, c.now()) }
func (c *testClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// withClock makes New keep expiries on c instead of the system clock.
func withClock(c *testClock) Option {
	return optionFunc(func(cfg *config) error {
		cfg.now = c.now
		return nil
	})
}

// useClock puts s on c; it must run before s is shared with any other
// goroutine (the background shuffler included).
func useClock(s *Shuffler, c *testClock) { s.cfg.now = c.now }
