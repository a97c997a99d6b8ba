package memshuffle

import (
	"errors"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// TestHugeRound: a fresh arena is rounded up to whole huge pages only
// where that adds at most a quarter of it and stays within the cap.
func TestHugeRound(t *testing.T) {
	const huge = osmem.HugePageSize
	if huge == 0 {
		for _, n := range []int{1, 3 << 20, 7 << 20} {
			if got := hugeRound(n, store.MaxArenaSize); got != n {
				t.Errorf("hugeRound(%d) = %d without huge pages", n, got)
			}
		}
		return
	}
	for _, c := range []struct {
		n, most, want int
	}{
		{1, store.MaxArenaSize, 1},
		{huge / 2, store.MaxArenaSize, huge / 2},               // doubling it
		{huge/5*4 - 4096, store.MaxArenaSize, huge/5*4 - 4096}, // just over a quarter
		{huge/5*4 + 4, store.MaxArenaSize, huge},               // under a quarter
		{huge - 1, store.MaxArenaSize, huge},
		{huge, store.MaxArenaSize, huge},
		{huge + 4096, store.MaxArenaSize, huge + 4096}, // 2 MiB more for 4 KiB: no
		{3*huge - huge/2, store.MaxArenaSize, 3 * huge},
		{4*huge - 12345, store.MaxArenaSize, 4 * huge},
		{4*huge - 12345, 4*huge - 1, 4*huge - 12345}, // past the cap
		{4*huge - 12345, 4 * huge, 4 * huge},
		{7*huge + 1, store.MaxArenaSize, 8 * huge},
	} {
		if got := hugeRound(c.n, c.most); got != c.want {
			t.Errorf("hugeRound(%d, %d) = %d, want %d", c.n, c.most, got, c.want)
		}
		if got := hugeRound(c.n, c.most); got < c.n || got > c.most && got != c.n {
			t.Errorf("hugeRound(%d, %d) = %d: shrank or passed the cap", c.n, c.most, got)
		}
	}
}

// TestShuffleArenasOnHugePages: a Shuffle maps a shard's fresh arena on
// whole huge pages where that costs at most a quarter more, and holds the
// entries where it does not, with the bytes added left as free space that
// the next entries take. Secret memory, never on huge pages, is not
// rounded.
func TestShuffleArenasOnHugePages(t *testing.T) {
	const huge = osmem.HugePageSize
	if huge == 0 {
		t.Skip("no transparent huge pages here")
	}
	page := osmem.PageSize()
	for _, c := range []struct {
		entries         int
		secret, rounded bool
	}{
		{huge / 32 * 7 / 8, false, true},    // 1.75 MiB: one huge page
		{huge / 32 * 29 / 10, false, true},  // 5.8 MiB: three
		{huge / 32 * 14 / 10, false, false}, // 2.8 MiB: 4 MiB would add 43%
		{huge / 32 / 2, false, false},       // 1 MiB: left as it is
		{huge / 32 * 7 / 8, true, false},
	} {
		opts := []Option{WithShards(1), WithLockMode(LockNone)}
		if c.secret {
			probe, err := New(WithSecretMemory())
			if err != nil {
				t.Logf("no secret memory: %v", err)
				continue
			}
			probe.Close()
			opts = []Option{WithShards(1), WithSecretMemory()}
		}
		s := newTest(t, opts...)
		hs, err := tryAllocN(s, c.entries)
		if c.secret && errors.Is(err, ErrLockFailed) {
			// Secret memory is always locked: under a small limit it
			// holds too few entries to be worth rounding.
			t.Logf("secret memory: %v", err)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Shuffle(); err != nil {
			t.Fatal(err)
		}
		sh := &s.shards[0]
		sh.mu.Lock()
		var arenas []int
		for _, a := range sh.Arenas.List() {
			if a != nil {
				arenas = append(arenas, len(a.Mem))
			}
		}
		sh.mu.Unlock()
		need := (c.entries*32 + page - 1) &^ (page - 1)
		want := need
		if c.rounded {
			want = (need + huge - 1) &^ (huge - 1)
		}
		if len(arenas) != 1 || arenas[0] != want {
			t.Errorf("%d entries of 32 bytes (secret memory: %v): arenas of %v bytes after Shuffle, want one of %d", c.entries, c.secret, arenas, want)
		}
		// The slack is the current arena's: new entries fill it before a
		// new arena is mapped.
		before := s.Stats().MappedBytes
		for range (want - c.entries*32) / 32 {
			if _, err := Alloc[byte](s, 32); err != nil {
				t.Fatal(err)
			}
		}
		if after := s.Stats().MappedBytes; after != before {
			t.Errorf("%d entries of 32 bytes: filling the arena's %d free bytes mapped %d bytes more", c.entries, want-c.entries*32, after-before)
		}
		for _, h := range hs[:10] {
			if _, err := RentSlice[byte](s, h); err != nil {
				t.Fatal(err)
			}
			if err := s.Return(h); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// tryAllocN allocates n entries of 32 bytes, and stops at the first error.
func tryAllocN(s *Shuffler, n int) ([]Handle, error) {
	hs := make([]Handle, 0, n)
	for range n {
		h, err := Alloc[byte](s, 32)
		if err != nil {
			return hs, err
		}
		hs = append(hs, h)
	}
	return hs, nil
}
