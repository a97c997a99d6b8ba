package memshuffle

import (
	"errors"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestRandomOpsExpiry runs the operation model with a default TTL short
// next to how far the clock moves, so that entries expire at rest, while
// rented and while viewed, and sweeps find due entries.
func TestRandomOpsExpiry(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []Option
	}{
		{"ctr/2", []Option{WithShards(2)}},
		{"gcm/1", []Option{WithShards(1), WithCipher(AES256GCM)}},
		{"tracked/2", []Option{WithShards(2), WithRentTracking(time.Hour)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newTest(t, append(c.opts, WithArenaSize(4096), WithDefaultTTL(40*time.Millisecond))...)
			src := &randSource{r: mrand.New(mrand.NewPCG(uint64(len(c.name)), 11)), left: 3000}
			newOpModel(t, s, src).run()
			t.Logf("expired %d", s.Stats().Expired)
			if st := s.Stats(); st.Expired < 20 {
				t.Fatalf("only %d entries expired: the model hardly exercised expiry", st.Expired)
			}
		})
	}
}

// TestExpiryOnTestClock: deadlines are tested against the Shuffler's clock,
// not the system's, to the nanosecond.
func TestExpiryOnTestClock(t *testing.T) {
	clock := newTestClock(time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC))
	s := newTest(t, WithShards(1), withClock(clock))
	h, err := CopyFrom(s, []byte("expires on the test clock"))
	if err != nil {
		t.Fatal(err)
	}
	at := clock.time().Add(10 * time.Millisecond)
	if err := s.SetExpiry(h, at); err != nil {
		t.Fatal(err)
	}
	clock.advance(10*time.Millisecond - 1)
	if got := readAll(t, s, h); string(got) != "expires on the test clock" {
		t.Fatalf("one nanosecond before its deadline: %q", got)
	}
	clock.advance(1)
	if _, err := Rent[byte](s, h); !errors.Is(err, ErrExpired) {
		t.Fatalf("at its deadline: %v, want ErrExpired", err)
	}
	if st := s.Stats(); st.Expired != 1 || st.Entries != 0 {
		t.Fatalf("Stats: %d expired, %d entries", st.Expired, st.Entries)
	}

	// The default TTL counts from the allocation on the same clock.
	s2 := newTest(t, WithShards(1), WithDefaultTTL(time.Minute), withClock(clock))
	h2, err := CopyFrom(s2, []byte("ttl"))
	if err != nil {
		t.Fatal(err)
	}
	if e, err := s2.Expiry(h2); err != nil || !e.Equal(clock.time().Add(time.Minute)) {
		t.Fatalf("Expiry: %v, %v; want %v", e, err, clock.time().Add(time.Minute))
	}
	clock.advance(time.Minute)
	if err := s2.Shuffle(); err != nil {
		t.Fatal(err)
	}
	if st := s2.Stats(); st.Expired != 1 {
		t.Fatalf("Shuffle at the deadline swept %d entries", st.Expired)
	}
}

// TestCheckFindsExpiryFaults plants each expiry fault the checker looks
// for and expects it reported.
func TestCheckFindsExpiryFaults(t *testing.T) {
	cases := []struct {
		name  string
		plant func(sh *shard, live, freed, expired uint32)
		want  string
	}{
		{"deadline on a freed slot", func(sh *shard, _, freed, _ uint32) { sh.Expiries.Set(freed, 1<<62) }, "deadline for slot"},
		{"deadline on a tombstone", func(sh *shard, _, _, expired uint32) { sh.Expiries.Set(expired, 1<<62) }, "bad tombstone"},
		{"deadline past the table", func(sh *shard, _, _, _ uint32) { sh.Expiries.Set(sh.Slots.Len()+5, 1<<62) }, "deadline for slot"},
		{"tombstone keeps its place", func(sh *shard, _, _, expired uint32) { sh.Slots.At(expired).Off = 64 }, "bad tombstone"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := newTestClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
			s, err := New(WithShards(1), WithArenaSize(4096), withClock(clock))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var hs [3]Handle
			for k := range hs {
				if hs[k], err = Alloc[byte](s, 40); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Free(hs[1]); err != nil {
				t.Fatal(err)
			}
			if err := s.SetExpiry(hs[2], clock.time()); err != nil {
				t.Fatal(err)
			}
			if s.Valid(hs[2]) {
				t.Fatal("entry due now still valid")
			}
			if err := s.check(); err != nil {
				t.Fatalf("before planting: %v", err)
			}
			sh := &s.shards[0]
			sh.mu.Lock()
			c.plant(sh, hs[0].slot(), hs[1].slot(), hs[2].slot())
			sh.mu.Unlock()
			err = s.check()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("check after %s: %v, want an error about %q", c.name, err, c.want)
			}
			sh.mu.Lock()
			sh.Expiries.Reset()
			sh.mu.Unlock()
		})
	}

	// A live entry past its deadline is what a sweep must not leave.
	clock := newTestClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	s := newTest(t, WithShards(1), withClock(clock))
	h, err := Alloc[byte](s, 40)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetExpiry(h, clock.time().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.checkNoneDue(clock.now()); err != nil {
		t.Fatalf("before the deadline: %v", err)
	}
	clock.advance(time.Second)
	if err := s.checkNoneDue(clock.now()); err == nil || !strings.Contains(err.Error(), "after its deadline") {
		t.Fatalf("live entry at its deadline: %v", err)
	}
	if err := s.Shuffle(); err != nil {
		t.Fatal(err)
	}
	if err := s.checkNoneDue(clock.now()); err != nil {
		t.Fatalf("after Shuffle: %v", err)
	}
}
