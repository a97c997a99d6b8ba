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

// TestDueUntilLooksOnce: a sweep that takes due slots a few at a time,
// over many calls, looks through the deadlines once, not once a call: a
// background step per 512 of 200,000 entries that expired together, each
// looking afresh, took seconds. Every slot due is handed out once, and
// none whose deadline was cleared or put off after the sweep began.
func TestDueUntilLooksOnce(t *testing.T) {
	const n, per = 10000, 100
	var e Expiries
	for i := range uint32(n) {
		e.Set(i, int64(i%7))
	}
	e.Set(n, 100) // not due
	scans := 0
	afterDueScan = func() { scans++ }
	t.Cleanup(func() { afterDueScan = nil })
	seen := make(map[uint32]bool)
	first := uint32(n)
	calls := 0
	for done := false; !done; calls++ {
		if calls > n {
			t.Fatal("DueUntil never reports done")
		}
		k := 0
		done = e.DueUntil(50, func(i uint32) bool {
			if k == per {
				return false
			}
			k++
			if seen[i] {
				t.Fatalf("slot %d handed out twice", i)
			}
			seen[i] = true
			e.Clear(i)
			if first == n {
				// Other paths, meanwhile: a free, and a later deadline.
				first = i
				for j := uint32(0); j < n; j += 10 {
					if j+1 != i {
						e.Clear(j + 1)
					}
					if j+2 != i {
						e.Set(j+2, 1000)
					}
				}
			}
			return true
		})
	}
	if scans != 1 {
		t.Errorf("%d calls looked through the deadlines %d times, want once", calls, scans)
	}
	for i := range uint32(n) {
		if want := i == first || (i%10 != 1 && i%10 != 2); seen[i] != want {
			t.Errorf("slot %d handed out: %v, want %v", i, seen[i], want)
		}
	}
	left := n/10 + 1 // the put off, and the one never due
	if first%10 == 2 {
		left-- // handed out, so not put off
	}
	if _, ok := e.Get(n); !ok || e.Len() != left {
		t.Errorf("%d deadlines left, want %d", e.Len(), left)
	}
}
