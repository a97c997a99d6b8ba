package memshuffle

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
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
		return outcome{due, sl.State(), s.tally.expired.Load()}
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

// TestTypeCheckMatchesTypeOf holds typeCheck, and the test of isByte by
// which callers skip it, to typeOf: the same error for small and large
// plain types, types defined on byte, bools, empty types and types that
// hold pointers; and isByte holds for byte alone, which typeOf accepts.
func TestTypeCheckMatchesTypeOf(t *testing.T) {
	type named byte
	type small struct {
		_ byte
		_ uint16
	}
	type withBool struct {
		_ byte
		_ bool
	}
	type withPtr struct{ _ *byte }
	check := func(name string, fast func() error, slow func() (typeInfo, error), byteItself bool, isB func() bool) {
		t.Helper()
		err := fast()
		_, want := slow()
		if fmt.Sprint(err) != fmt.Sprint(want) {
			t.Errorf("%s: typeCheck gives %v, typeOf %v", name, err, want)
		}
		if isB() != byteItself {
			t.Errorf("%s: isByte is %v", name, isB())
		}
		if isB() && want != nil {
			t.Errorf("%s: isByte lets through a type typeOf refuses: %v", name, want)
		}
	}
	check("byte", typeCheck[byte], typeOf[byte], true, isByte[byte])
	check("bool", typeCheck[bool], typeOf[bool], false, isByte[bool])
	check("int8", typeCheck[int8], typeOf[int8], false, isByte[int8])
	check("int16", typeCheck[int16], typeOf[int16], false, isByte[int16])
	check("float32", typeCheck[float32], typeOf[float32], false, isByte[float32])
	check("named", typeCheck[named], typeOf[named], false, isByte[named])
	check("[3]byte", typeCheck[[3]byte], typeOf[[3]byte], false, isByte[[3]byte])
	check("[1]bool", typeCheck[[1]bool], typeOf[[1]bool], false, isByte[[1]bool])
	check("small", typeCheck[small], typeOf[small], false, isByte[small])
	check("withBool", typeCheck[withBool], typeOf[withBool], false, isByte[withBool])
	check("struct{}", typeCheck[struct{}], typeOf[struct{}], false, isByte[struct{}])
	check("uint64", typeCheck[uint64], typeOf[uint64], false, isByte[uint64])
	check("*byte", typeCheck[*byte], typeOf[*byte], false, isByte[*byte])
	check("withPtr", typeCheck[withPtr], typeOf[withPtr], false, isByte[withPtr])
	check("string", typeCheck[string], typeOf[string], false, isByte[string])
	for name, err := range map[string]error{
		"bool": typeCheck[bool](), "withBool": typeCheck[withBool](),
		"struct{}": typeCheck[struct{}](), "withPtr": typeCheck[withPtr](),
	} {
		if err == nil {
			t.Errorf("typeCheck accepts %s", name)
		}
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

// TestHotPathsInline: the small functions of every Rent's and Return's
// path that their comments say inline still do. dueNow went one over the
// inliner's budget unseen, which cost a call on each. It asks the compiler
// (go build -gcflags=-m) and is skipped where no go command, or no source,
// is at hand.
func TestHotPathsInline(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the package")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	out, err := exec.Command(gobin, "build", "-gcflags=-m", "-o", os.DevNull, ".").CombinedOutput()
	if err != nil {
		// The package compiled, into this test: what failed is the
		// environment (no source here, no cache or modules for this user).
		t.Skipf("go build: %v\n%.500s", err, out)
	}
	for _, fn := range []string{"(*shard).dueNow", "(*shard).nextCounters", "isByte[go.shape.uint8]", "shortCTR"} {
		if !strings.Contains(string(out), "can inline "+fn+"\n") {
			t.Errorf("%s no longer inlines", fn)
		}
	}
}
