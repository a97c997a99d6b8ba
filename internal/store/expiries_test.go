package store

import "testing"

// TestExpiriesEarliest: the cached earliest deadline follows sets,
// replacements and clears.
func TestExpiriesEarliest(t *testing.T) {
	var e Expiries
	if _, ok := e.Next(); ok {
		t.Fatal("empty index has a next deadline")
	}
	steps := []struct {
		set   bool
		slot  uint32
		at    int64
		want  int64
		empty bool
	}{
		{true, 1, 50, 50, false},
		{true, 2, 30, 30, false},
		{true, 3, 70, 30, false},
		{true, 2, 90, 50, false}, // the earliest moves later
		{false, 1, 0, 70, false},
		{true, 3, 10, 10, false},
		{false, 3, 0, 90, false},
		{false, 2, 0, 0, true},
		{true, 4, -5, -5, false},
	}
	for k, st := range steps {
		if st.set {
			e.Set(st.slot, st.at)
		} else {
			e.Clear(st.slot)
		}
		got, ok := e.Next()
		if ok == st.empty || (ok && got != st.want) {
			t.Fatalf("step %d: next = %d, %v; want %d", k, got, ok, st.want)
		}
	}
}

// TestExpiriesDue: Due visits exactly the deadlines not after now, and
// the visited slot may clear itself.
func TestExpiriesDue(t *testing.T) {
	var e Expiries
	for i := range uint32(10) {
		e.Set(i, int64(i)*10)
	}
	seen := map[uint32]bool{}
	e.Due(45, func(i uint32) {
		seen[i] = true
		e.Clear(i)
	})
	if len(seen) != 5 || e.Len() != 5 {
		t.Fatalf("due at 45: visited %v, %d left", seen, e.Len())
	}
	for i := range uint32(5) {
		if !seen[i] {
			t.Fatalf("slot %d, due at %d, not visited", i, i*10)
		}
	}
	if d, ok := e.Next(); !ok || d != 50 {
		t.Fatalf("next after the sweep: %d, %v", d, ok)
	}
}
