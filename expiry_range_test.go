package memshuffle

import (
	"errors"
	"math"
	"testing"
	"time"
)

// TestExpiryOutOfRange: times that int64 Unix nanoseconds cannot say
// saturate instead of wrapping. A date after 2262 keeps the entry (it wrapped
// to the past, wiping it at once), one before 1678 has passed (it wrapped to
// the future, never expiring), and a default TTL whose deadline cannot be
// kept is refused by New rather than failing, or wiping, later.
func TestExpiryOutOfRange(t *testing.T) {
	s := newTest(t, WithShards(1))
	far, err := CopyFrom(s, []byte("far future"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetExpiry(far, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, far); string(got) != "far future" {
		t.Fatalf("entry expiring in 3000: got %q", got)
	}
	if e, err := s.Expiry(far); err != nil || !e.Equal(lastDeadline) {
		t.Fatalf("Expiry: %v, %v; want %v", e, err, lastDeadline)
	}

	past, err := CopyFrom(s, []byte("long past"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetExpiry(past, time.Date(1500, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	if _, err := Rent[byte](s, past); !errors.Is(err, ErrExpired) {
		t.Fatalf("entry that expired in 1500: %v, want ErrExpired", err)
	}
	mustCheck(t, s)

	for _, ttl := range []time.Duration{math.MaxInt64, time.Duration(math.MaxInt64 - time.Now().UnixNano() + int64(time.Hour))} {
		if _, err := New(WithDefaultTTL(ttl)); !errors.Is(err, ErrInvalidOption) {
			t.Fatalf("WithDefaultTTL(%v): %v, want ErrInvalidOption", ttl, err)
		}
	}
	// 200 years fits: entries keep their value and expire then.
	s2 := newTest(t, WithDefaultTTL(200*365*24*time.Hour))
	h, err := CopyFrom(s2, []byte("kept"))
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s2, h); string(got) != "kept" {
		t.Fatalf("got %q", got)
	}
	if e, _ := s2.Expiry(h); e.Year() < 2200 || e.Year() > 2262 {
		t.Fatalf("expiry %v", e)
	}
	if deadlineAfter(math.MaxInt64) != math.MaxInt64 || unixNanos(time.Date(-5000, 1, 1, 0, 0, 0, 0, time.UTC)) != math.MinInt64 {
		t.Fatal("deadlines do not saturate")
	}
}
