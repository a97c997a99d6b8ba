package store

import (
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestUnmapListTake: Take hands out the smallest region of n to most
// bytes, both in whole pages, and nothing when every region is smaller or
// larger than that.
func TestUnmapListTake(t *testing.T) {
	k := 64 * osmem.PageSize()
	var l UnmapList
	for _, n := range []int{2 * k, k + k/8, k, k + k/16} {
		r, err := osmem.Map(n, osmem.Flags{})
		if err != nil {
			t.Fatal(err)
		}
		l = append(l, r)
	}
	defer func() {
		for _, r := range l {
			_ = osmem.Unmap(r)
		}
	}()
	for _, c := range []struct{ n, most, want int }{
		{k - 100, k - 100, k},            // both rounded to whole pages first
		{k, k + k/16, k + k/16},          // the smallest left within a sixteenth
		{k, k + k/16, 0},                 // k + k/8 is past it
		{k + k/16 + 1, k + k/8, k + k/8}, // n rounded up a page
		{k + k/2, k + k/2 + k/16, 0},     // 2k is past it
	} {
		r := l.Take(c.n, c.most)
		got := 0
		if r != nil {
			got = len(r.Data)
			if err := osmem.Unmap(r); err != nil {
				t.Fatal(err)
			}
		}
		if got != c.want {
			t.Errorf("Take(%d, %d) = a region of %d bytes, want %d", c.n, c.most, got, c.want)
		}
	}
	if len(l) != 1 || len(l[0].Data) != 2*k {
		t.Errorf("%d regions left, want the one of %d bytes", len(l), 2*k)
	}
}
