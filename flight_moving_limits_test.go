package memshuffle

import (
	"sync/atomic"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// TestMovingReturnRelocks: under LockBestEffort at the memory-lock limit
// (modelled: every lock is refused until the first unmap gives locked room
// back), a moving Return of an oversize entry maps its new arena unlocked
// while the old one still holds the room. Once the old arena is unmapped,
// in flight, the new one is locked, as a release under the lock would
// lock it (Arenas.Release and its Relock). Without it the entry stayed in
// swappable memory, and was decrypted there at its next Rent, until the
// next Shuffle or background cycle.
func TestMovingReturnRelocks(t *testing.T) {
	needLockRoom(t, 4*store.MaxArenaSize) // the limit modelled, not the real one
	s := newTest(t, WithShards(1), WithShuffleOnBorrowReturn(true))
	h, err := Alloc[byte](s, store.MaxArenaSize+5)
	if err != nil {
		t.Fatal(err)
	}
	b, err := RentSlice[byte](s, h)
	if err != nil {
		t.Fatal(err)
	}
	for j := range b {
		b[j] = byte(j)
	}
	var freed atomic.Bool
	osmem.SetFault(func(o osmem.Op) error {
		if o == osmem.OpUnmap {
			freed.Store(true)
		}
		return nil
	})
	osmem.SetLockFault(func(int) error {
		if !freed.Load() {
			return osmem.ErrInjected
		}
		return nil
	})
	t.Cleanup(func() { osmem.SetFault(nil); osmem.SetLockFault(nil) })
	if err := s.Return(h); err != nil {
		t.Fatal(err)
	}
	osmem.SetFault(nil)
	osmem.SetLockFault(nil)
	if !freed.Load() {
		t.Fatal("the Return did not unmap the old arena")
	}
	if st := s.Stats(); st.UnlockedBytes != 0 {
		t.Errorf("after the moving Return, with room to lock again: Stats.UnlockedBytes = %d, LockedBytes = %d; the entry's new arena stays swappable", st.UnlockedBytes, st.LockedBytes)
	}
}

// TestMovingReturnReplacesCurUnlocked: a moving Return whose new place
// needs a new shared arena while the current arena is empty releases that
// arena (Place's ReplaceCur), and unmaps it with the shard unlocked, as it
// unmaps the arena it leaves.
func TestMovingReturnReplacesCurUnlocked(t *testing.T) {
	s := newTest(t, WithShards(1), WithShuffleOnBorrowReturn(true))
	sh := &s.shards[0]
	m := model{}
	big := allocPattern(t, s, m, flightSize, 3) // fills an arena of its own size
	var smalls []Handle
	for j := range 64 {
		smalls = append(smalls, allocPattern(t, s, m, 512, j))
	}
	for _, h := range smalls {
		if err := s.Free(h); err != nil {
			t.Fatal(err)
		}
		delete(m, h)
	}
	sh.mu.Lock()
	cur := sh.Arenas.Cur()
	empty := cur != nil && cur.Live == 0
	sh.mu.Unlock()
	if !empty {
		t.Fatal("setup: the current arena is not empty")
	}
	if _, err := RentSlice[byte](s, big); err != nil {
		t.Fatal(err)
	}
	unmaps, held := lockedSystemCalls(t, sh, nil, osmem.OpUnmap)
	if err := s.Return(big); err != nil {
		t.Fatal(err)
	}
	osmem.SetFault(nil)
	if held.Load() != 0 {
		t.Errorf("the moving Return unmapped %d of %d regions with the shard lock held", held.Load(), unmaps.Load())
	}
	verifyModel(t, s, m)
}

// TestMovingReturnSmallMapsUnlocked: moving Returns of small entries fill
// arenas and empty old ones all the time. Each time such a Return asks the
// system to map memory (and lock it) or unmap it (a new arena when the
// current one is full, the release of an arena the move or the sweep
// after it emptied), the shard lock is free: under it, each of those held
// the shard's other entries for milliseconds.
func TestMovingReturnSmallMapsUnlocked(t *testing.T) {
	for _, c := range []Cipher{AES256CTR, AES256GCM} {
		t.Run(c.String(), func(t *testing.T) {
			s := newTest(t, WithShards(1), WithArenaSize(4096), WithShuffleOnBorrowReturn(true), WithCipher(c))
			sh := &s.shards[0]
			m := model{}
			var hs []Handle
			for j := range 200 {
				hs = append(hs, allocPattern(t, s, m, 100+j%50, j))
			}
			var returning atomic.Bool
			asked, held := lockedSystemCalls(t, sh, returning.Load, osmem.OpMap, osmem.OpUnmap)
			for range 5 {
				for _, h := range hs {
					if _, err := RentSlice[byte](s, h); err != nil {
						t.Fatal(err)
					}
					returning.Store(true)
					err := s.Return(h)
					returning.Store(false)
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			osmem.SetFault(nil)
			if asked.Load() == 0 {
				t.Fatal("no Return mapped or unmapped memory")
			}
			if held.Load() != 0 {
				t.Errorf("the shard lock was held for %d of the %d times a Return asked the system for memory", held.Load(), asked.Load())
			}
			verifyModel(t, s, m)
		})
	}
}
