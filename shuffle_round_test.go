package memshuffle

import (
	"errors"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// TestGranuleRound: a fresh arena is rounded up to whole granules only
// where that adds at most a quarter of it and stays within the cap.
func TestGranuleRound(t *testing.T) {
	const g = freshGranule
	for _, c := range []struct {
		n, most, want int
	}{
		{1, store.MaxArenaSize, 1},
		{g / 2, store.MaxArenaSize, g / 2},               // doubling it
		{g/5*4 - 4096, store.MaxArenaSize, g/5*4 - 4096}, // just over a quarter
		{g/5*4 + 4, store.MaxArenaSize, g},               // under a quarter
		{g - 1, store.MaxArenaSize, g},
		{g, store.MaxArenaSize, g},
		{g + 4096, store.MaxArenaSize, g + 4096}, // 2 MiB more for 4 KiB: no
		{3*g - g/2, store.MaxArenaSize, 3 * g},
		{4*g - 12345, store.MaxArenaSize, 4 * g},
		{4*g - 12345, 4*g - 1, 4*g - 12345}, // past the cap
		{4*g - 12345, 4 * g, 4 * g},
		{7*g + 1, store.MaxArenaSize, 8 * g},
	} {
		got := granuleRound(c.n, c.most)
		if got != c.want {
			t.Errorf("granuleRound(%d, %d) = %d, want %d", c.n, c.most, got, c.want)
		}
		if got < c.n || got > c.most && got != c.n {
			t.Errorf("granuleRound(%d, %d) = %d: shrank or passed the cap", c.n, c.most, got)
		}
	}
}

// TestShuffleArenasRounded: a Shuffle rounds a shard's fresh arena up to
// whole granules where that costs at most a quarter more, and holds the
// entries where it does not, with the bytes added left as free space that
// the next entries take. Where the Shuffler locks its memory (secret
// memory always) and the memory-lock limit holds the process, nothing is
// rounded. On Linux a rounded arena is all on huge pages, secret memory
// excepted.
func TestShuffleArenasRounded(t *testing.T) {
	page := osmem.PageSize()
	bound := osmem.BindingLockLimit() >= 0
	for _, c := range []struct {
		entries         int
		secret, rounded bool
	}{
		{freshGranule / 32 * 7 / 8, false, true},    // 1.75 MiB: one granule
		{freshGranule / 32 * 29 / 10, false, true},  // 5.8 MiB: three
		{freshGranule / 32 * 14 / 10, false, false}, // 2.8 MiB: 4 MiB would add 43%
		{freshGranule / 32 / 2, false, false},       // 1 MiB: left as it is
		{freshGranule / 32 * 7 / 8, true, !bound},
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
		sizes := arenaSizes(s, 0)
		need := (c.entries*32 + page - 1) &^ (page - 1)
		want := need
		if c.rounded {
			want = (need + freshGranule - 1) &^ (freshGranule - 1)
		}
		if len(sizes) != 1 || sizes[0] != want {
			t.Errorf("%d entries of 32 bytes (secret memory: %v): arenas of %v bytes after Shuffle, want one of %d", c.entries, c.secret, sizes, want)
		}
		// The slack is the current arena's: new entries fill it before a
		// new arena is mapped.
		before := s.Stats().MappedBytes
		if _, err := tryAllocN(s, (want-c.entries*32)/32); err != nil {
			t.Fatal(err)
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

// TestShuffleHandsOverEqualArenas: shards of one size that a Shuffle does
// not round (2.8 MiB of entries each, and secret memory under a memory-lock
// limit) hand their emptied arenas on, one to the next: the second Shuffle
// releases the last shard's arena, and every other shard takes the one
// before it emptied. The hand-over compared a region's size with the size
// asked for, unrounded to pages, and never matched.
func TestShuffleHandsOverEqualArenas(t *testing.T) {
	const shards, per = 4, freshGranule / 32 * 14 / 10
	s := newTest(t, WithShards(shards), WithLockMode(LockNone))
	var i uint32
	s.replayShard = func() uint32 { i++; return (i - 1) % shards }
	if _, err := tryAllocN(s, shards*per); err != nil {
		t.Fatal(err)
	}
	if got := releasedBySecondShuffle(t, s); got != 1 {
		t.Errorf("second Shuffle of %d equal shards released %d arenas, want 1 (the others handed on)", shards, got)
	}
}

// TestShuffleHandsOverUnevenShards: a single goroutine's entries go to
// every other shard, in shares that differ, and a Shuffle takes the
// shards from the most data to the least, so that shards of about one
// size follow each other and hand their emptied arenas on, though no two
// hold exactly as many entries. In index order the sizes alternated, and
// every shard mapped its own arenas (8 released by the second Shuffle);
// now only the region no smaller shard can take and the last shard's are
// released.
func TestShuffleHandsOverUnevenShards(t *testing.T) {
	const shards = 8
	s := newTest(t, WithShards(shards), WithLockMode(LockNone))
	for k := range shards {
		per := 12000 + 37*k // 384-394 KB a shard
		if k%2 == 0 {
			per += 8000 // 640-650 KB
		}
		s.replayShard = func() uint32 { return uint32(k) }
		if _, err := tryAllocN(s, per); err != nil {
			t.Fatal(err)
		}
	}
	if got := releasedBySecondShuffle(t, s); got != 2 {
		t.Errorf("second Shuffle of %d shards of two sizes released %d arenas, want 2", shards, got)
	}
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
}

// TestShuffleRoundsNothingPastLockLimit: where the memory-lock limit holds
// the process, a Shuffle does not round a shard's fresh arena, which would
// leave it past the room there is to lock it. Under ulimit -l 8192, with
// WithArenaSize(2 << 20) (which leaves freshMax no cap), 6.5 MB of entries
// in one shard rounded up to 8 MiB stayed unlocked after every Shuffle.
func TestShuffleRoundsNothingPastLockLimit(t *testing.T) {
	const lim = 8 << 20
	if got := osmem.BindingLockLimit(); got != lim {
		t.Skipf("needs a binding memory-lock limit of 8 MiB (have %d)", got)
	}
	s := newTest(t, WithShards(1), WithArenaSize(2<<20))
	const n = lim / 32 * 13 / 16 // 6.5 MiB, which would round to the whole limit
	if _, err := tryAllocN(s, n); err != nil {
		t.Fatal(err)
	}
	for k := range 3 {
		if err := s.Shuffle(); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.UnlockedBytes != 0 {
			t.Errorf("Shuffle %d of %d entries of 32 bytes: %d bytes unlocked, %d locked", k+1, n, st.UnlockedBytes, st.LockedBytes)
		}
	}
}

// releasedBySecondShuffle shuffles s twice and returns how many arenas the
// second Shuffle gave back to the system.
func releasedBySecondShuffle(t *testing.T, s *Shuffler) uint64 {
	t.Helper()
	if err := s.Shuffle(); err != nil {
		t.Fatal(err)
	}
	before := s.Stats().ArenasReleased
	if err := s.Shuffle(); err != nil {
		t.Fatal(err)
	}
	return s.Stats().ArenasReleased - before
}

// arenaSizes lists the sizes of shard k's arenas.
func arenaSizes(s *Shuffler, k int) []int {
	sh := &s.shards[k]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var sizes []int
	for _, a := range sh.Arenas.List() {
		if a != nil {
			sizes = append(sizes, len(a.Mem))
		}
	}
	return sizes
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
