package memshuffle

import (
	"os"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// TestLargeEntryMapsItsSize: the arena of one large entry is the entry's
// size rounded to whole pages, however it lines up with 2 MiB huge pages.
// The system used to round every region of 4 MiB or more up to a multiple
// of 2 MiB: an entry of 4 MiB and a byte mapped 6 MiB, all of it counted
// in MappedBytes and, locked, against RLIMIT_MEMLOCK, and an oversize
// entry of 16 MiB mapped 18.
func TestLargeEntryMapsItsSize(t *testing.T) {
	page := osmem.PageSize()
	for _, n := range []int{4<<20 + 1, 6<<20 + 1, 8<<20 - 1, store.MaxArenaSize, store.MaxArenaSize + 1} {
		s := newTest(t, WithShards(1), WithLockMode(LockNone))
		if _, err := Alloc[byte](s, n); err != nil {
			t.Fatal(err)
		}
		// An oversize entry's arena has room for its alignment.
		want := int64(n+EntryAlign-1+page-1) &^ int64(page-1)
		if got := s.Stats().MappedBytes; got > want {
			t.Errorf("an entry of %d bytes: %d bytes mapped, %d more than its pages (at most %d)", n, got, got-int64(n), want)
		}
		if err := s.Shuffle(); err != nil {
			t.Fatal(err)
		}
		if got := s.Stats().MappedBytes; got > want {
			t.Errorf("an entry of %d bytes, after Shuffle: %d bytes mapped (at most %d)", n, got, want)
		}
	}
}

// TestLargeEntryLockedUnderLimit: for a process held to RLIMIT_MEMLOCK, an
// entry that fits under the limit with its pages is locked. Rounded up to
// 2 MiB it did not: as nobody with ulimit -l 8192, an entry of 6 MiB and
// a byte took an arena of 8 MiB, which with the Shuffler's own locked
// region went over the limit, and stayed in unlocked memory. Run as
// su nobody -s /bin/bash -c 'ulimit -l 8192; ./memshuffle.test
// -test.run LargeEntryLockedUnderLimit'.
func TestLargeEntryLockedUnderLimit(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root is not held to the memory-lock limit")
	}
	const huge = 2 << 20
	limit := osmem.LockLimit()
	if limit < 4*huge || limit%huge != 0 {
		t.Skipf("RLIMIT_MEMLOCK %d: the test needs a multiple of 2 MiB of at least 8 MiB", limit)
	}
	s := newTest(t, WithShards(1))
	n := int(limit) - huge + 1
	if _, err := Alloc[byte](s, n); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	t.Logf("an entry of %d bytes under a limit of %d: %d bytes mapped, %d locked, %d unlocked", n, limit, st.MappedBytes, st.LockedBytes, st.UnlockedBytes)
	if st.UnlockedBytes != 0 {
		t.Errorf("an entry of %d bytes under a limit of %d: %d bytes unlocked, %d locked", n, limit, st.UnlockedBytes, st.LockedBytes)
	}
}

// BenchmarkShuffleOddArena shuffles one shard of 32-byte entries whose
// arenas are not a whole number of huge pages (5.4 MB): the case in which
// rounding a region up to 2 MiB multiples, as osmem once did, could save
// TLB misses in the tail.
func BenchmarkShuffleOddArena(b *testing.B) {
	b.Run("entries=170000/size=32", func(b *testing.B) {
		s := filledShuffler(b, 170000, 32, WithShards(1))
		benchShuffleCPU(b, s, 170000, 32).report(b, 0)
		b.ReportMetric(float64(s.Stats().MappedBytes), "mapped-bytes")
	})
}
