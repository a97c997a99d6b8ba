package store

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

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

// TestExpiriesDue: DueUntil visits exactly the deadlines not after now,
// and the visited slot may clear itself.
func TestExpiriesDue(t *testing.T) {
	var e Expiries
	for i := range uint32(10) {
		e.Set(i, int64(i)*10)
	}
	seen := map[uint32]bool{}
	e.DueUntil(45, func(i uint32) bool {
		seen[i] = true
		e.Clear(i)
		return true
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

// TestDueUntilInPieces: a sweep that takes due slots a few at a time,
// over many calls, hands every slot due out once, earliest deadline first
// (then lowest slot), and none whose deadline was cleared or put off after
// the sweep began.
func TestDueUntilInPieces(t *testing.T) {
	const n, per = 10000, 100
	var e Expiries
	for i := range uint32(n) {
		e.Set(i, int64(i%7))
	}
	e.Set(n, 100) // not due
	seen := make(map[uint32]bool)
	var order []deadline
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
			d, _ := e.Get(i)
			order = append(order, deadline{d, i})
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
	for i := range uint32(n) {
		if want := i == first || (i%10 != 1 && i%10 != 2); seen[i] != want {
			t.Errorf("slot %d handed out: %v, want %v", i, seen[i], want)
		}
	}
	for k := 1; k < len(order); k++ {
		if !order[k-1].before(order[k]) {
			t.Fatalf("handed out %v before %v", order[k-1], order[k])
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

// TestExpiriesHeld: a due slot the sweep leaves (its entry is borrowed)
// is held: Get still reports its deadline, so the return that ends the
// borrow wipes it, but Next and DueBy pass it over, so it does not keep
// every later sweep looking at it. A map that cached the earliest
// deadline kept reporting it, and each sweep looked through every
// deadline again. Set puts it back among the others; Clear removes it.
func TestExpiriesHeld(t *testing.T) {
	var e Expiries
	e.Set(1, 10) // borrowed, due at 10
	e.Set(2, 20)
	e.Set(3, 30)
	var visits []uint32
	leaveBorrowed := func(i uint32) bool {
		visits = append(visits, i)
		if i != 1 {
			e.Clear(i)
		}
		return true
	}
	if !e.DueUntil(15, leaveBorrowed) || len(visits) != 1 {
		t.Fatalf("first sweep visited %v", visits)
	}
	if d, ok := e.Get(1); !ok || d != 10 {
		t.Fatalf("held slot's deadline: %d, %v", d, ok)
	}
	if d, ok := e.Next(); !ok || d != 20 || e.DueBy(15) {
		t.Fatalf("after holding slot 1: next %d, %v, due by 15 %v", d, ok, e.DueBy(15))
	}
	visits = nil
	if !e.DueUntil(25, leaveBorrowed) || len(visits) != 1 || visits[0] != 2 {
		t.Fatalf("second sweep visited %v, want only slot 2", visits)
	}
	var due []uint32
	e.Each(func(i uint32, d int64) {
		if d <= 25 {
			due = append(due, i)
		}
	})
	if len(due) != 1 || due[0] != 1 || !e.Held(1) {
		t.Fatalf("deadlines not after 25: %v, want the held slot 1 (held %v)", due, e.Held(1))
	}
	if e.Len() != 2 || e.None() {
		t.Fatalf("%d deadlines, none %v; want 2", e.Len(), e.None())
	}
	e.Set(1, 40) // a new expiry while borrowed
	if d, ok := e.Next(); !ok || d != 30 {
		t.Fatalf("next after setting the held slot again: %d, %v", d, ok)
	}
	e.Clear(3)
	if d, ok := e.Next(); !ok || d != 40 {
		t.Fatalf("next: %d, %v, want the held slot's new deadline", d, ok)
	}
	e.DueUntil(50, func(uint32) bool { return true }) // held again
	e.Clear(1)
	if !e.None() || e.Len() != 0 {
		t.Fatalf("after clearing the held slot: %d deadlines", e.Len())
	}
}

// TestExpiriesModel runs random sets, clears and partial sweeps against a
// map and checks, after each (every 16th in the larger run), that every
// deadline and the earliest one agree with it and that the heap keeps its
// order, records its places and holds no chunk too many.
func TestExpiriesModel(t *testing.T) {
	// Both runs set more often than they clear, then the other way. 300
	// slots: one chunk. 3 chunks' worth: the heap grows to more than one
	// chunk and gives them back.
	for _, c := range []struct{ slots, steps, every int }{{300, 20000, 1}, {3 * chunkSlots, 60000, 16}} {
		t.Run(fmt.Sprint(c.slots), func(t *testing.T) { expiriesModel(t, c.slots, c.steps, c.every) })
	}
}

// expiriesModel runs steps random operations on up to slots slots,
// checking the heap every so many.
func expiriesModel(t *testing.T, slots, steps, every int) {
	r := rand.New(rand.NewPCG(1, uint64(slots)))
	var e Expiries
	want := map[uint32]int64{}
	held := map[uint32]bool{}
	maxChunks := 0
	sets, clears := 9, 9 // in tenths: 90% sets, 10% sweeps
	for step := range steps {
		i := r.Uint32N(uint32(slots))
		if step == steps/2 {
			sets, clears = 2, 8 // then 20%, 60%, 20%: shrink
		}
		switch op := r.IntN(10); {
		case op < sets:
			d := r.Int64N(1000)
			e.Set(i, d)
			want[i] = d
			delete(held, i)
		case op < clears:
			e.Clear(i)
			delete(want, i)
			delete(held, i)
		default:
			now, budget := r.Int64N(1000), 1+r.IntN(8)
			if sets == 9 {
				now, budget = r.Int64N(10), 1
			}
			last := deadline{at: -1}
			e.DueUntil(now, func(i uint32) bool {
				if budget == 0 {
					return false
				}
				budget--
				d := deadline{want[i], i}
				if d.at > now || held[i] || !last.before(d) {
					t.Fatalf("step %d: handed out %v at %d after %v (held %v)", step, d, now, last, held[i])
				}
				last = d
				if i%3 == 0 { // borrowed: left
					held[i] = true
				} else {
					e.Clear(i)
					delete(want, i)
				}
				return true
			})
		}
		if step%every != 0 {
			continue
		}
		earliest, any := int64(1<<63-1), false
		for i, d := range want {
			if got, ok := e.Get(i); !ok || got != d {
				t.Fatalf("step %d: slot %d deadline %d, %v; want %d", step, i, got, ok, d)
			}
			if !held[i] {
				earliest, any = min(earliest, d), true
			}
		}
		if d, ok := e.Next(); ok != any || ok && d != earliest {
			t.Fatalf("step %d: next %d, %v; want %d, %v", step, d, ok, earliest, any)
		}
		if e.Len() != len(want) {
			t.Fatalf("step %d: %d deadlines, want %d", step, e.Len(), len(want))
		}
		if err := e.checkHeap(); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		maxChunks = max(maxChunks, len(e.heap))
	}
	t.Logf("%d deadlines at the end, in %d chunks; %d chunks at most", e.Len(), len(e.heap), maxChunks)
}
