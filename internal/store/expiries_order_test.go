package store

import (
	"slices"
	"testing"
)

// TestExpiriesOrdered: with Ordered, Due and DueUntil hand out the due
// slots in ascending order, the same however the map orders them, skip
// those not due and those cleared meanwhile, and Reset keeps the setting.
func TestExpiriesOrdered(t *testing.T) {
	fill := func() *Expiries {
		e := &Expiries{Ordered: true}
		for i := uint32(0); i < 64; i++ {
			e.Set(i*7%64, int64(i%4)) // slots 0 to 63, deadlines 0 to 3
		}
		return e
	}
	var want []uint32
	for i := uint32(0); i < 64; i++ {
		if k := i * 7 % 64; i%4 <= 1 {
			want = append(want, k)
		}
	}
	slices.Sort(want)
	for range 20 { // a map's order changes from one range to the next
		var got []uint32
		fill().Due(1, func(i uint32) { got = append(got, i) })
		if !slices.Equal(got, want) {
			t.Fatalf("Due visited %v, want %v", got, want)
		}
		got = got[:0]
		e := fill()
		e.DueUntil(1, func(i uint32) bool {
			got = append(got, i)
			e.Clear(want[len(want)-1]) // the last one is cleared before its turn
			return true
		})
		if !slices.Equal(got, want[:len(want)-1]) {
			t.Fatalf("DueUntil visited %v, want %v", got, want[:len(want)-1])
		}
	}
	e := fill()
	e.Reset()
	if !e.Ordered {
		t.Fatal("Reset cleared Ordered")
	}
}
