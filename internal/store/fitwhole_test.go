package store

import "testing"

// TestFitWhole: an arena sized for entries of n bytes leaves at most an
// eighth of itself past the last whole entry, grows by whole pages and at
// most a quarter, and stays as it was where it already fits or cannot
// fit within that.
func TestFitWhole(t *testing.T) {
	const most = MaxArenaSize
	for _, c := range []struct{ sz, n, want int }{
		{64 << 10, 32, 64 << 10},           // many small entries fill it
		{64 << 10, 32784, 68 << 10},        // a GCM entry of 32 KiB: two in 68 KiB, not one in 64
		{64 << 10, 20000, 64 << 10},        // three in 64 KiB leave 5,536 bytes, under an eighth
		{64 << 10, 40000, 80 << 10},        // two in 80 KiB
		{64 << 10, 64 << 10, 64 << 10},     // exactly one
		{64 << 10, 0, 64 << 10},            // ArenaSize(0): no entry to fit
		{most, most/2 + 1, most},           // no room to grow past MaxArenaSize
		{4096, 2100, 4096},                 // no whole page more within a quarter
		{1 << 20, 1<<19 + 1, 1<<20 + 4096}, // two in 1 MiB and a page
	} {
		got := fitWhole(c.sz, c.n, most, 4096)
		if got != c.want {
			t.Errorf("fitWhole(%d, %d) = %d, want %d", c.sz, c.n, got, c.want)
		}
		if got%4096 != 0 || got < c.sz || got > max(c.sz+c.sz/4, c.sz) || got > max(c.sz, most) {
			t.Errorf("fitWhole(%d, %d) = %d: not whole pages within a quarter more", c.sz, c.n, got)
		}
	}
}
