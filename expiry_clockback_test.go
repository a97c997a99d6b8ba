package memshuffle

import (
	"errors"
	"testing"
	"time"
)

// TestExpiredAnswerSurvivesClockStepBack: a rented entry past its
// deadline answers ErrExpired to a lookup (Size, View, ...); after the wall
// clock steps back, Return seals it again as live and the handle answers
// again with the old plaintext, although it already answered ErrExpired.
// Only deadlines found by a sweep are "held"; one found by a lookup is not.
func TestExpiredAnswerSurvivesClockStepBack(t *testing.T) {
	clock := newTestClock(time.Unix(1e9, 0))
	s := newTest(t, WithShards(1), withClock(clock))
	h, err := CopyFrom(s, []byte("secret-secret-secret-secret-1234"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetExpiry(h, clock.time().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := RentSlice[byte](s, h); err != nil {
		t.Fatal(err)
	}
	clock.advance(2 * time.Second)
	if _, err := s.Size(h); !errors.Is(err, ErrExpired) {
		t.Fatalf("Size past the deadline: %v, want ErrExpired", err)
	}
	clock.advance(-1500 * time.Millisecond) // NTP steps the clock back
	if err := s.Return(h); !errors.Is(err, ErrExpired) {
		t.Errorf("Return of an entry that already answered ErrExpired: %v, want ErrExpired", err)
	}
	if ok, err := Equal(s, h, []byte("secret-secret-secret-secret-1234")); err == nil {
		t.Errorf("entry that answered ErrExpired is readable again (equal=%v)", ok)
	}
}
