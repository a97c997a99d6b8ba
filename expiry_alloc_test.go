package memshuffle

import (
	"errors"
	"testing"
	"time"
)

// TestExpiredReclaimedByAlloc: a Shuffler that gives every entry a TTL and
// drops its handles, with no Shuffle and no background shuffler, keeps
// allocating in the memory of entries that expired: live bytes and mapped
// memory stay near what the unexpired entries need, and under LockStrict
// no allocation is refused for want of locked memory the expired ones
// hold. Before, every expired entry kept its space until it was looked up.
func TestExpiredReclaimedByAlloc(t *testing.T) {
	for _, c := range []struct {
		name  string
		size  int
		batch int
		opts  []Option
	}{
		{"32B", 32, 512, nil},
		{"4KiB", 4096, 512, nil},
		// 2 MiB a round: the lock limit of an ordinary user (8 MiB)
		// holds a few rounds, not forty.
		{"16KiB/strict", 16 << 10, 128, []Option{WithLockMode(LockStrict)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := newTestClock(time.Unix(1e9, 0))
			const ttl, rounds = time.Second, 40
			batch := c.batch
			s := newTest(t, append([]Option{WithShards(1), WithDefaultTTL(ttl), withClock(clock)}, c.opts...)...)
			var most int64
			for r := range rounds {
				for range batch {
					if _, err := Alloc[byte](s, c.size); err != nil {
						if errors.Is(err, ErrLockFailed) && r == 0 {
							t.Skip("the lock limit does not hold one batch")
						}
						t.Fatalf("round %d: %v", r, err)
					}
				}
				// Each round's entries expire before the next round's.
				clock.advance(ttl + time.Millisecond)
				st := s.Stats()
				most = max(most, st.MappedBytes)
				if limit := 3 * int64(batch*c.size); st.LiveBytes > limit {
					t.Fatalf("round %d: %d live bytes for %d unexpired, want at most %d", r, st.LiveBytes, batch*c.size, limit)
				}
			}
			if limit := 4*int64(batch*c.size) + 4<<20; most > limit {
				t.Errorf("mapped up to %d bytes for %d unexpired, want at most %d", most, batch*c.size, limit)
			}
			if st := s.Stats(); st.Expired < uint64((rounds-3)*batch) {
				t.Errorf("%d entries wiped at expiry, want at least %d", st.Expired, (rounds-3)*batch)
			}
		})
	}
}
