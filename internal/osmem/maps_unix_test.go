//go:build unix

package osmem

import (
	"errors"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMapBudget: Map counts each region's mappings, refuses past the
// budget with ErrMapLimit (and ENOMEM), counts a failed map out, and
// takes again what an Unmap gives back.
func TestMapBudget(t *testing.T) {
	held0, _ := MapsHeld()
	const k = 4
	prev := SetMapBudgetForTest(held0 + k*regionMaps)
	t.Cleanup(func() { SetMapBudgetForTest(prev) })
	var rs []*Region
	t.Cleanup(func() {
		for _, r := range rs {
			Unmap(r)
		}
	})
	for i := range k {
		r, err := Map(PageSize(), Flags{})
		if err != nil {
			t.Fatalf("map %d of %d within the budget: %v", i+1, k, err)
		}
		rs = append(rs, r)
	}
	r, err := Map(PageSize(), Flags{})
	if !errors.Is(err, ErrMapLimit) || !errors.Is(err, unix.ENOMEM) || r != nil {
		t.Fatalf("map past the budget: %v, %v; want ErrMapLimit and ENOMEM", r, err)
	}
	if held, _ := MapsHeld(); held != held0+k*regionMaps {
		t.Fatalf("after the refusal: %d mappings held, want %d", held, held0+k*regionMaps)
	}
	if err := Unmap(rs[k-1]); err != nil {
		t.Fatal(err)
	}
	rs = rs[:k-1]
	SetFault(func(o Op) error {
		if o == OpMap {
			return ErrInjected
		}
		return nil
	})
	_, err = Map(PageSize(), Flags{})
	SetFault(nil)
	if !errors.Is(err, ErrInjected) {
		t.Fatalf("map refused by the system: %v", err)
	}
	r, err = Map(PageSize(), Flags{})
	if err != nil {
		t.Fatalf("map after an unmap and a failed map gave back their mappings: %v", err)
	}
	rs = append(rs, r)
	for _, r := range rs {
		if err := Unmap(r); err != nil {
			t.Fatal(err)
		}
	}
	rs = nil
	if held, _ := MapsHeld(); held != held0 {
		t.Fatalf("after unmapping everything: %d mappings held, %d before", held, held0)
	}
}

// TestMapBudgetIsHalfTheLimit: on Linux the budget is half of
// vm.max_map_count, or of its default where /proc cannot be read;
// elsewhere there is none.
func TestMapBudgetIsHalfTheLimit(t *testing.T) {
	_, budget := MapsHeld()
	if runtime.GOOS != "linux" {
		if budget != 0 {
			t.Fatalf("budget %d on %s, which sets no limit", budget, runtime.GOOS)
		}
		return
	}
	limit := mapCountLimit()
	if budget != limit/2 {
		t.Fatalf("budget %d, vm.max_map_count %d", budget, limit)
	}
}
