package memshuffle

import (
	"sync/atomic"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// countMaps counts the mmap calls the Shuffler makes until the test ends
// or the returned function is called, which returns the count.
func countMaps(t *testing.T) func() int64 {
	var n atomic.Int64
	osmem.SetFault(func(o osmem.Op) error {
		if o == osmem.OpMap {
			n.Add(1)
		}
		return nil
	})
	t.Cleanup(func() { osmem.SetFault(nil) })
	return func() int64 {
		osmem.SetFault(nil)
		return n.Load()
	}
}

// TestChurnReusesEmptiedArena: entries that come and go, each emptying an
// arena while the next needs one, map one arena, not one each. Each entry
// fills a 4 KiB arena, so every Alloc needs a new one and every Free
// empties one that is not the current arena.
func TestChurnReusesEmptiedArena(t *testing.T) {
	for _, c := range []Cipher{AES256CTR, AES256GCM} {
		t.Run(c.String(), func(t *testing.T) {
			s := newTest(t, WithShards(1), WithArenaSize(4096), WithCipher(c))
			size := 4096 - s.shards[0].Overhead()
			prev, err := Alloc[byte](s, size)
			if err != nil {
				t.Fatal(err)
			}
			before := s.Stats()
			maps := countMaps(t)
			for range 100 {
				h, err := Alloc[byte](s, size)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Free(prev); err != nil {
					t.Fatal(err)
				}
				prev = h
			}
			if n := maps(); n != 1 {
				t.Errorf("100 Allocs and Frees mapped %d arenas, want 1", n)
			}
			mustCheck(t, s)
			st := s.Stats()
			if got := st.ArenasReleased - before.ArenasReleased; got != 0 {
				t.Errorf("%d arenas released", got)
			}
			// The live entry's arena and the emptied one kept.
			if st.Arenas != 1 || st.MappedBytes != 2*4096 {
				t.Errorf("%d arenas, %d bytes mapped: want 1 arena and one kept, 8192 bytes", st.Arenas, st.MappedBytes)
			}
			if err := s.Shuffle(); err != nil {
				t.Fatal(err)
			}
			mustCheck(t, s)
			if st := s.Stats(); st.MappedBytes != 4096 || st.ArenasReleased == before.ArenasReleased {
				t.Errorf("after Shuffle: %d bytes mapped, %d arenas released: want the kept one unmapped", st.MappedBytes, st.ArenasReleased-before.ArenasReleased)
			}
		})
	}
}

// keepOne leaves shard i of s with an emptied arena kept and one live
// entry, which it returns, in the current arena.
func keepOne(t *testing.T, s *Shuffler, i int) Handle {
	t.Helper()
	sh := &s.shards[i]
	size := 4096 - sh.Overhead()
	sh.mu.Lock()
	h1, err := sh.alloc(size, 1)
	if err != nil {
		sh.mu.Unlock()
		t.Fatal(err)
	}
	h2, err := sh.alloc(size, 1)
	sh.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Free(h1); err != nil {
		t.Fatal(err)
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.Arenas.Kept() != 4096 {
		t.Fatalf("shard %d keeps %d bytes, want one 4 KiB arena", i, sh.Arenas.Kept())
	}
	return h2
}

// TestKeptGivenBack: the paths that give memory back for a new arena give
// back the kept ones too. Without that, a shard kept locked memory that a
// refused Alloc of another shard needed.
func TestKeptGivenBack(t *testing.T) {
	cases := []struct {
		name string
		give func(t *testing.T, s *Shuffler)
	}{
		{"reclaim", func(t *testing.T, s *Shuffler) {
			sh := &s.shards[1]
			sh.mu.Lock()
			sh.reclaim()
			sh.mu.Unlock()
		}},
		{"relock", func(t *testing.T, s *Shuffler) {
			// As for an arena the system would not lock: a region of a
			// page, mapped unlocked, which relockAfterGiveBack locks once
			// it gave something back.
			r, err := s.aux.Map(func() (*osmem.Region, error) { return osmem.Map(4096, osmem.Flags{}) })
			if err != nil {
				t.Fatal(err)
			}
			s.relockAfterGiveBack(r)
			_ = s.aux.Unmap(r)
		}},
		{"map", func(t *testing.T, s *Shuffler) {
			// An arena of another size: the kept one goes before the map.
			sh := &s.shards[0]
			sh.mu.Lock()
			defer sh.mu.Unlock()
			if _, err := sh.alloc(3*4096, 1); err != nil {
				t.Error(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTest(t, WithShards(2), WithArenaSize(4096))
			keepOne(t, s, 0)
			before := s.Stats()
			tc.give(t, s)
			mustCheck(t, s)
			sh := &s.shards[0]
			sh.mu.Lock()
			kept := sh.Arenas.Kept()
			sh.mu.Unlock()
			if kept != 0 {
				t.Fatalf("shard 0 still keeps %d bytes", kept)
			}
			if st := s.Stats(); st.ArenasReleased != before.ArenasReleased+1 {
				t.Fatalf("%d arenas released, want 1", st.ArenasReleased-before.ArenasReleased)
			}
		})
	}
}
