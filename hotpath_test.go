package memshuffle

import (
	"errors"
	"fmt"
	"testing"
	"time"
	"unsafe"

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

// TestTypeCheckMatchesTypeOf holds typeCheck, and the test of
// noPointerFits by which callers skip it, to typeOf: the same error for
// small plain types, for the sizes at the bounds (0 and a pointer's), and
// for types that hold pointers; and no type that noPointerFits lets
// through is one typeOf refuses.
func TestTypeCheckMatchesTypeOf(t *testing.T) {
	type named byte
	type small struct {
		_ byte
		_ uint16
	}
	type withPtr struct{ _ *byte }
	check := func(name string, size uintptr, fast func() error, slow func() (typeInfo, error)) {
		t.Helper()
		err := fast()
		_, want := slow()
		if fmt.Sprint(err) != fmt.Sprint(want) {
			t.Errorf("%s: typeCheck gives %v, typeOf %v", name, err, want)
		}
		if noPointerFits(size) && want != nil {
			t.Errorf("%s: noPointerFits lets through a type typeOf refuses: %v", name, want)
		}
	}
	check("byte", 1, typeCheck[byte], typeOf[byte])
	check("bool", 1, typeCheck[bool], typeOf[bool])
	check("int16", 2, typeCheck[int16], typeOf[int16])
	check("float32", 4, typeCheck[float32], typeOf[float32])
	check("named", 1, typeCheck[named], typeOf[named])
	check("[3]byte", 3, typeCheck[[3]byte], typeOf[[3]byte])
	check("[7]byte", 7, typeCheck[[7]byte], typeOf[[7]byte])
	check("small", 4, typeCheck[small], typeOf[small])
	check("struct{}", 0, typeCheck[struct{}], typeOf[struct{}])
	check("[0]byte", 0, typeCheck[[0]byte], typeOf[[0]byte])
	check("uint64", 8, typeCheck[uint64], typeOf[uint64])
	check("[8]byte", 8, typeCheck[[8]byte], typeOf[[8]byte])
	check("*byte", 8, typeCheck[*byte], typeOf[*byte])
	check("withPtr", 8, typeCheck[withPtr], typeOf[withPtr])
	check("string", 16, typeCheck[string], typeOf[string])
	if typeCheck[struct{}]() == nil || noPointerFits(0) {
		t.Error("a type of size 0 passes")
	}
	if typeCheck[withPtr]() == nil || noPointerFits(unsafe.Sizeof(withPtr{})) {
		t.Error("a type holding a pointer passes")
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
