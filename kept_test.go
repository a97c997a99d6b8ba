package memshuffle

import (
	"sync/atomic"
	"testing"
	"time"

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
			// The live entry's arena and the emptied one, idle.
			if st.Arenas != 1 || st.MappedBytes != 2*4096 || s.aux.IdleBytes() != 4096 {
				t.Errorf("%d arenas, %d bytes mapped, %d idle: want 1 arena and one idle, 8192 bytes", st.Arenas, st.MappedBytes, s.aux.IdleBytes())
			}
			if err := s.Shuffle(); err != nil {
				t.Fatal(err)
			}
			mustCheck(t, s)
			if st := s.Stats(); st.MappedBytes != 4096 || st.ArenasReleased == before.ArenasReleased || s.aux.IdleBytes() != 0 {
				t.Errorf("after Shuffle: %d bytes mapped, %d arenas released, %d idle: want the idle one unmapped",
					st.MappedBytes, st.ArenasReleased-before.ArenasReleased, s.aux.IdleBytes())
			}
		})
	}
}

// idleOne leaves shard i of s with one live entry, which it returns, in
// its current arena, and the Aux with one idle 4 KiB region, the shard's
// arena that emptied.
func idleOne(t *testing.T, s *Shuffler, i int) Handle {
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
	if n := s.aux.IdleBytes(); n != 4096 {
		t.Fatalf("%d bytes idle, want one 4 KiB region", n)
	}
	return h2
}

// TestIdleGivenBack: a refused lock or mapping gives back the idle
// regions, which hold memory the limit counts, before it counts as a
// refusal, whichever shard made them and whether or not that shard is
// busy. The system is modelled as refusing while any region is idle. When
// the regions were kept under each shard's lock, a refused Alloc could give
// back only those of shards it could lock, and a Shuffle or rotation none.
func TestIdleGivenBack(t *testing.T) {
	cases := []struct {
		name string
		mode LockMode
		op   osmem.Op
		do   func(t *testing.T, s *Shuffler) error
	}{
		{"alloc/strict", LockStrict, osmem.OpLock, allocBeside},
		{"alloc/best-effort", LockBestEffort, osmem.OpLock, allocBeside},
		{"alloc/mmap", LockBestEffort, osmem.OpMap, allocBeside},
		{"shuffle/strict", LockStrict, osmem.OpLock, func(t *testing.T, s *Shuffler) error {
			allocN(t, s, 3, 4096-s.shards[0].Overhead())
			idleOne(t, s, 1) // again: allocN's mapping took the first
			return s.Shuffle()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTest(t, WithShards(2), WithArenaSize(4096), WithLockMode(tc.mode))
			pick := uint32(1)
			s.replayShard = func() uint32 { return pick }
			idleOne(t, s, 1)
			pick = 0
			osmem.SetFault(func(o osmem.Op) error {
				if o == tc.op && s.aux.IdleBytes() > 0 {
					return osmem.ErrInjected
				}
				return nil
			})
			defer osmem.SetFault(nil)
			err := tc.do(t, s)
			osmem.SetFault(nil)
			if err != nil {
				t.Fatal(err)
			}
			mustCheck(t, s)
			if st := s.Stats(); st.LockFailures != 0 || st.UnlockedBytes != 0 || s.aux.IdleBytes() != 0 {
				t.Errorf("%d lock failures, %d bytes unlocked, %d idle: want none", st.LockFailures, st.UnlockedBytes, s.aux.IdleBytes())
			}
		})
	}
}

// allocBeside allocates in shard 0 an entry that needs an arena of 12 KiB,
// which no idle region of 4 KiB fits, while another goroutine holds shard
// 1 for 50 ms, as a Rent or a rotation batch could.
func allocBeside(t *testing.T, s *Shuffler) error {
	sh := &s.shards[1]
	held, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		sh.mu.Lock()
		close(held)
		time.Sleep(50 * time.Millisecond)
		sh.mu.Unlock()
	}()
	<-held
	_, err := Alloc[byte](s, 3*4096)
	<-done
	return err
}
