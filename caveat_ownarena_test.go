package memshuffle

import (
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// checkOwnArenas fails the test unless every entry the own-arena rule
// (store.Shard.OwnArena, which Alloc applies) gives an arena of its own
// sits alone in a dedicated arena, and every other entry in a shared one.
// The invariant checker holds the same; this says which entry broke it.
func checkOwnArenas(t *testing.T, s *Shuffler, when string) {
	t.Helper()
	s.lockAll()
	defer s.unlockAll()
	for i := range s.shards {
		sh := &s.shards[i]
		for j := range sh.Slots.Len() {
			sl := sh.Slots.At(j)
			switch sl.State() {
			case store.StateLive, store.StateRented, store.StateViewed:
			default:
				continue
			}
			a := sh.Arenas.Get(sl.Arena())
			if own := sh.OwnArena(sl); own != a.Dedicated || (own && a.Live != 1) {
				t.Errorf("%s: entry of %d bytes (aligned to %d, tag %d): own arena by Alloc's rule %v, in an arena of %d bytes, dedicated %v, with %d entries",
					when, sl.Size, sl.Align(), sh.Overhead(), own, len(a.Mem), a.Dedicated, a.Live)
			}
		}
	}
}

// TestOwnArenaSameEverywhere: an entry whose size with its tag is
// store.MaxArenaSize and is 16-aligned is too large to share an arena
// with its alignment slack, so Alloc gives it one of its own; Shuffle's
// layout for entries of one size checked the size without the alignment
// and moved such entries into shared arenas. A shared arena emptied back
// to its start also took one in. Entries just under the boundary share
// arenas on every path.
func TestOwnArenaSameEverywhere(t *testing.T) {
	for _, c := range []struct {
		name   string
		cipher Cipher
		size   int // an entry's data; the tag comes on top
	}{
		{"CTR at the boundary", AES256CTR, store.MaxArenaSize},
		{"CTR just under", AES256CTR, store.MaxArenaSize - 16},
		{"CTR just over", AES256CTR, store.MaxArenaSize + 16},
		{"GCM at the boundary", AES256GCM, store.MaxArenaSize - 16},
		{"GCM just under", AES256GCM, store.MaxArenaSize - 32},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Without a lock: the test is about placement, and root
			// would lock 100 MB for it.
			s := newTest(t, WithShards(1), WithCipher(c.cipher), WithLockMode(LockNone))
			var hs []Handle
			for range 2 {
				h, err := Alloc[byte](s, c.size)
				if err != nil {
					t.Fatal(err)
				}
				hs = append(hs, h)
			}
			checkOwnArenas(t, s, "after Alloc")
			mustCheck(t, s)
			if err := s.Shuffle(); err != nil {
				t.Fatal(err)
			}
			checkOwnArenas(t, s, "after Shuffle")
			mustCheck(t, s)
			runCycle(t, s)
			checkOwnArenas(t, s, "after a background cycle")
			mustCheck(t, s)

			// The shared arena the next entry fits in, emptied to its start,
			// and then an entry at the boundary.
			for _, h := range hs {
				if err := s.Free(h); err != nil {
					t.Fatal(err)
				}
			}
			small, err := Alloc[byte](s, store.MaxArenaSize-64)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Free(small); err != nil {
				t.Fatal(err)
			}
			if _, err := Alloc[byte](s, c.size); err != nil {
				t.Fatal(err)
			}
			checkOwnArenas(t, s, "after Alloc into an emptied current arena")
			mustCheck(t, s)
		})
	}
}

// runCycle runs one background cycle's steps on every shard, as the
// background shuffler does, mapping spares as it asks for them.
func runCycle(t *testing.T, s *Shuffler) {
	t.Helper()
	for i := range s.shards {
		sh := &s.shards[i]
		var later store.UnmapList
		var spare *osmem.Region
		sh.mu.Lock()
		sh.startCycle(sh.permutation(sh.bgOrder, int(sh.Slots.Len())), &later)
		sh.mu.Unlock()
		later.UnmapAll(&s.aux)
		for steps := 0; ; steps++ {
			if steps > 1000 {
				t.Fatal("the steps never end")
			}
			sh.mu.Lock()
			more, want := sh.step(&later, &spare, false)
			sh.mu.Unlock()
			later.UnmapAll(&s.aux)
			if want > 0 {
				r, err := s.mapAux(want)
				if err != nil {
					t.Fatal(err)
				}
				spare = r
				continue
			}
			if !more {
				break
			}
		}
		if spare != nil {
			osmem.Wipe(spare.Data)
			if err := s.aux.Unmap(spare); err != nil {
				t.Fatal(err)
			}
		}
	}
}
