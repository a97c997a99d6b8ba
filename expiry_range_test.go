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

// TestUnixNanosEdges: unixNanos saturates at the edges of the int64 range
// and nowhere else, by the Unix seconds of t. time.Unix(math.MaxInt64, 0),
// "never", compares as before year 1 (its seconds since year 1 wrap), and
// an entry given it as its expiry was wiped at once, with a nil error.
func TestUnixNanosEdges(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    time.Time
		want int64
	}{
		{"last instant", time.Unix(0, math.MaxInt64), math.MaxInt64},
		{"a nanosecond before it", time.Unix(0, math.MaxInt64-1), math.MaxInt64 - 1},
		{"a nanosecond after it", time.Unix(0, math.MaxInt64).Add(1), math.MaxInt64},
		{"first instant", time.Unix(0, math.MinInt64), math.MinInt64},
		{"a nanosecond after the first", time.Unix(0, math.MinInt64+1), math.MinInt64 + 1},
		{"a nanosecond before the first", time.Unix(0, math.MinInt64).Add(-1), math.MinInt64},
		{"Unix(MaxInt64, 0)", time.Unix(math.MaxInt64, 0), math.MaxInt64},
		{"Unix(MaxInt64-62135596800, 0)", time.Unix(math.MaxInt64-62135596800, 0), math.MaxInt64},
		{"Unix(MaxInt64-62135596801, 0)", time.Unix(math.MaxInt64-62135596801, 0), math.MaxInt64},
		{"Unix(MaxInt64-62135596799, 0), the first to wrap", time.Unix(math.MaxInt64-62135596799, 0), math.MaxInt64},
		{"Unix(MinInt64, 0)", time.Unix(math.MinInt64, 0), math.MinInt64},
		{"Unix(1<<40, 0)", time.Unix(1<<40, 0), math.MaxInt64},
		{"Unix(-1<<40, 0)", time.Unix(-1<<40, 0), math.MinInt64},
		{"epoch", time.Unix(0, 0), 0},
		{"a second before the epoch", time.Unix(-1, 0), -int64(time.Second)},
	} {
		if got := unixNanos(tc.t); got != tc.want {
			t.Errorf("%s: unixNanos = %d, want %d", tc.name, got, tc.want)
		}
	}
	s := newTest(t, WithShards(1))
	h, err := CopyFrom(s, []byte("never"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetExpiry(h, time.Unix(math.MaxInt64, 0)); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, h); string(got) != "never" {
		t.Fatalf("entry expiring at time.Unix(math.MaxInt64, 0): got %q", got)
	}
	if e, err := s.Expiry(h); err != nil || !e.Equal(lastDeadline) {
		t.Fatalf("Expiry: %v, %v; want %v", e, err, lastDeadline)
	}
	mustCheck(t, s)
}

// TestAddNanosSaturates: a deadline is now plus the TTL, or the last
// instant when that passes it, for clocks on either side of 1970. Before
// 1970 the overflow test itself wrapped, and every deadline was the last
// instant.
func TestAddNanosSaturates(t *testing.T) {
	for _, tc := range []struct {
		now  int64
		ttl  time.Duration
		want int64
	}{
		{0, time.Second, int64(time.Second)},
		{-10 * int64(time.Second), time.Second, -9 * int64(time.Second)},
		{math.MinInt64, time.Duration(math.MaxInt64), -1},
		{math.MaxInt64 - 5, 5, math.MaxInt64},
		{math.MaxInt64 - 5, 6, math.MaxInt64},
		{math.MaxInt64, 1, math.MaxInt64},
		{1, time.Duration(math.MaxInt64), math.MaxInt64},
	} {
		if got := addNanos(tc.now, tc.ttl); got != tc.want {
			t.Errorf("addNanos(%d, %d) = %d, want %d", tc.now, tc.ttl, got, tc.want)
		}
	}
}

// TestDefaultTTLBefore1970: with the clock before 1970, an entry made
// under WithDefaultTTL expires a TTL later, not never.
func TestDefaultTTLBefore1970(t *testing.T) {
	clock := newTestClock(time.Unix(-10, 0))
	s := newTest(t, WithShards(1), withClock(clock), WithDefaultTTL(time.Second))
	h, err := Alloc[byte](s, 32)
	if err != nil {
		t.Fatal(err)
	}
	exp, err := s.Expiry(h)
	if err != nil {
		t.Fatal(err)
	}
	if want := clock.time().Add(time.Second); !exp.Equal(want) {
		t.Errorf("Expiry = %v, want %v", exp.UTC(), want.UTC())
	}
	clock.advance(2 * time.Second)
	if _, err := Rent[byte](s, h); !errors.Is(err, ErrExpired) {
		t.Errorf("Rent 2 s after a 1 s TTL: %v, want ErrExpired", err)
		s.Return(h)
	}
	mustCheck(t, s)
}
