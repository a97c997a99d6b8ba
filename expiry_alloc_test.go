package memshuffle

import (
	"errors"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
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
			s := newOrSkip(t, append([]Option{WithShards(1), WithDefaultTTL(ttl), withClock(clock)}, c.opts...)...)
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

// TestRefusedAllocSweepsBounded: an Alloc the system refuses memory for
// wipes at most refusedSweepEntries expired entries before it tries again,
// not every one: with 20,000 small entries expired and every new mapping
// refused, it used to wipe all 20,000 under the shard lock (half a second
// for 500,000 as an ordinary user under LockStrict). The space it frees is
// enough for the entry, so the Alloc still succeeds, and later ones go on
// where it stopped.
func TestRefusedAllocSweepsBounded(t *testing.T) {
	clock := newTestClock(time.Unix(1e9, 0))
	// The default arena, were it to shrink under a small memory-lock limit,
	// would hold less than one sweep frees.
	s := newTest(t, WithShards(1), WithDefaultTTL(time.Second), withClock(clock), WithArenaSize(64<<10))
	const n = 20000
	for range n {
		if _, err := Alloc[byte](s, 32); err != nil {
			t.Fatal(err)
		}
	}
	clock.advance(2 * time.Second)
	osmem.SetFault(func(o osmem.Op) error {
		if o == osmem.OpMap {
			return osmem.ErrInjected
		}
		return nil
	})
	t.Cleanup(func() { osmem.SetFault(nil) })
	// Entries too large for the space a paced sweep frees (a run of
	// allocSweepEntries 32-byte entries): they go into the current arena
	// until it is full, and the next one needs a mapping, refused.
	const size = 4 * allocSweepEntries * 32
	for k := 0; ; k++ {
		if k == n {
			t.Fatal("no Alloc was refused a mapping")
		}
		before := s.Stats().Expired
		h, err := Alloc[byte](s, size)
		if err != nil {
			t.Fatalf("Alloc %d, with expired entries to wipe: %v", k, err)
		}
		wiped := s.Stats().Expired - before
		if wiped <= allocSweepEntries {
			continue // the current arena had room
		}
		t.Logf("Alloc %d was refused a mapping and wiped %d expired entries", k, wiped)
		// Two tries, each with its paced sweep: one with the shard
		// unlocked for the mapping, one after.
		if most := uint64(2*allocSweepEntries + refusedSweepEntries); wiped > most {
			t.Errorf("one Alloc wiped %d expired entries, want at most %d", wiped, most)
		}
		// And its own sweep ran: without it the two paced sweeps freed
		// room enough here, and the test passed.
		if wiped <= 2*allocSweepEntries {
			t.Errorf("the refused Alloc wiped %d expired entries, no more than its two paced sweeps", wiped)
		}
		if err := s.Free(h); err != nil {
			t.Fatal(err)
		}
		break
	}
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
}

// TestExpiryClockStepsBack: the wall clock, which deadlines are read
// against, can step back (NTP, settimeofday, a resumed virtual machine).
// A deadline found due stays due: an entry whose deadline a sweep held
// while it was rented is wiped at its Return even if the clock has
// stepped back before the deadline since, and a live entry a sweep found
// due is wiped though a later read of the clock would say otherwise.
// Either used to end live, with its deadline held aside where no later
// sweep looked, past its expiry for as long as nobody touched it.
func TestExpiryClockStepsBack(t *testing.T) {
	for _, c := range []struct {
		name string
		// step runs with h due in a second, and leaves it wiped.
		step func(t *testing.T, s *Shuffler, clock *testClock, h Handle)
	}{
		{"borrowed", func(t *testing.T, s *Shuffler, clock *testClock, h Handle) {
			if _, err := RentSlice[byte](s, h); err != nil {
				t.Fatal(err)
			}
			clock.advance(2 * time.Second)
			if _, err := Alloc[byte](s, 32); err != nil { // its sweep holds h's deadline
				t.Fatal(err)
			}
			clock.advance(-1500 * time.Millisecond)
			if err := s.Return(h); !errors.Is(err, ErrExpired) {
				t.Errorf("Return after the clock stepped back: %v, want ErrExpired", err)
			}
		}},
		{"live", func(t *testing.T, s *Shuffler, clock *testClock, h Handle) {
			// Past the deadline at Alloc's read, before it at any later one.
			base, reads := clock.now(), 0
			s.cfg.now = func() int64 {
				if reads++; reads == 1 {
					return base + int64(2*time.Second)
				}
				return base + int64(500*time.Millisecond)
			}
			if _, err := Alloc[byte](s, 32); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := newTestClock(time.Unix(1e9, 0))
			s := newTest(t, WithShards(1), withClock(clock))
			h, _ := Alloc[byte](s, 32)
			if err := s.SetExpiry(h, clock.time().Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			c.step(t, s, clock, h)
			if st := s.Stats(); st.Expired != 1 {
				t.Errorf("%d entries wiped at expiry, want 1", st.Expired)
			}
			if err := s.check(); err != nil {
				t.Error(err)
			}
		})
	}
}
