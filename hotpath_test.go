package memshuffle

import (
	"fmt"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/store"
)

// TestDueNowMatchesExpired holds dueNow, which skips the call when no
// entry of the shard has a deadline, to expired itself: for a live, a
// rented and a viewed entry, with no deadline in the shard, a deadline on
// another entry only, one to come and one passed, both must give the same
// answer and leave the slot in the same state (a live entry past its
// deadline wiped), each on its own Shuffler set up alike.
func TestDueNowMatchesExpired(t *testing.T) {
	type outcome struct {
		due     bool
		state   uint32
		expired uint64
	}
	run := func(t *testing.T, borrow, deadline string, useDueNow bool) outcome {
		clock := newTestClock(time.Unix(1e9, 0))
		s, err := New(WithShards(1), withClock(clock))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		h, err := Alloc[byte](s, 32)
		if err != nil {
			t.Fatal(err)
		}
		other, err := Alloc[byte](s, 32)
		if err != nil {
			t.Fatal(err)
		}
		switch deadline {
		case "other":
			err = s.SetExpiry(other, clock.time().Add(time.Hour))
		case "future":
			err = s.SetExpiry(h, clock.time().Add(time.Hour))
		case "past":
			err = s.SetExpiry(h, clock.time().Add(time.Second))
		}
		if err != nil {
			t.Fatal(err)
		}
		switch borrow {
		case "rented":
			_, err = RentSlice[byte](s, h)
		case "viewed":
			_, err = ViewSlice[byte](s, h)
		}
		if err != nil {
			t.Fatal(err)
		}
		clock.advance(time.Minute)
		sh := &s.shards[h.shard()]
		sh.mu.Lock()
		defer sh.mu.Unlock()
		sl := sh.Slots.At(h.slot())
		var due bool
		if useDueNow {
			due = sh.dueNow(h.slot(), sl)
		} else {
			due = sh.expired(h.slot(), sl, nil)
		}
		return outcome{due, sl.State(), s.expired.Load()}
	}
	for _, borrow := range []string{"live", "rented", "viewed"} {
		for _, deadline := range []string{"none", "other", "future", "past"} {
			t.Run(fmt.Sprintf("%s/deadline=%s", borrow, deadline), func(t *testing.T) {
				got, want := run(t, borrow, deadline, true), run(t, borrow, deadline, false)
				if got != want {
					t.Errorf("dueNow: %+v, expired: %+v", got, want)
				}
				if deadline == "past" && (!want.due || borrow == "live" && want.state != store.StateExpired) {
					t.Errorf("the deadline passed unseen: %+v", want)
				}
			})
		}
	}
}
