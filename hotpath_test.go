package memshuffle

import (
	"errors"
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

// TestTypeOfSmallMatchesTypeOf holds typeOfSmall, which answers for types
// smaller than a pointer without a look, to typeOf: the same size,
// alignment and error for small plain types, for the sizes at the bounds
// (0 and a pointer's), and for types that hold pointers.
func TestTypeOfSmallMatchesTypeOf(t *testing.T) {
	type named byte
	type small struct {
		a byte
		b uint16
	}
	type withPtr struct{ p *byte }
	check := func(name string, fast, slow func() (typeInfo, error)) {
		t.Helper()
		ti, err := fast()
		want, wantErr := slow()
		if ti != want || fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Errorf("%s: typeOfSmall gives %+v, %v; typeOf %+v, %v", name, ti, err, want, wantErr)
		}
	}
	check("byte", typeOfSmall[byte], typeOf[byte])
	check("bool", typeOfSmall[bool], typeOf[bool])
	check("int16", typeOfSmall[int16], typeOf[int16])
	check("float32", typeOfSmall[float32], typeOf[float32])
	check("named", typeOfSmall[named], typeOf[named])
	check("[3]byte", typeOfSmall[[3]byte], typeOf[[3]byte])
	check("[7]byte", typeOfSmall[[7]byte], typeOf[[7]byte])
	check("small", typeOfSmall[small], typeOf[small])
	check("struct{}", typeOfSmall[struct{}], typeOf[struct{}])
	check("[0]byte", typeOfSmall[[0]byte], typeOf[[0]byte])
	check("uint64", typeOfSmall[uint64], typeOf[uint64])
	check("[8]byte", typeOfSmall[[8]byte], typeOf[[8]byte])
	check("*byte", typeOfSmall[*byte], typeOf[*byte])
	check("withPtr", typeOfSmall[withPtr], typeOf[withPtr])
	check("string", typeOfSmall[string], typeOf[string])
	if _, err := typeOfSmall[struct{}](); err == nil {
		t.Error("typeOfSmall accepts a type of size 0")
	}
	if _, err := typeOfSmall[withPtr](); err == nil {
		t.Error("typeOfSmall accepts a type holding a pointer")
	}
}

// TestViewOfLiveEntryBehindWriter covers the moment between a writer's
// wake-up and its rent, when the entry is live and the writer still
// queued: a new View must fail with ErrBusy then, as it does while the
// entry is viewed, or a stream of readers could keep the writer out. A
// writer queued for another entry of the shard holds no view back.
func TestViewOfLiveEntryBehindWriter(t *testing.T) {
	s, err := New(WithShards(1))
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
	queue := func(id uint64, d int32) {
		sh := &s.shards[h.shard()]
		sh.mu.Lock()
		sh.Waiters.QueueWriter(id, d)
		sh.mu.Unlock()
	}
	queue(h.id, 1)
	if _, err := ViewSlice[byte](s, h); !errors.Is(err, ErrBusy) {
		t.Fatalf("ViewSlice of a live entry with a writer queued: %v, want ErrBusy", err)
	}
	if _, err := View[[32]byte](s, h); !errors.Is(err, ErrBusy) {
		t.Fatalf("View of a live entry with a writer queued: %v, want ErrBusy", err)
	}
	queue(h.id, -1)
	queue(other.id, 1)
	if _, err := ViewSlice[byte](s, h); err != nil {
		t.Fatalf("ViewSlice with a writer queued for another entry: %v", err)
	}
	if err := s.ReturnView(h); err != nil {
		t.Fatal(err)
	}
	queue(other.id, -1)
	mustCheck(t, s)
}
