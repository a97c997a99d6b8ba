package memshuffle

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// countOps counts the calls of op the Shuffler makes until the test ends
// or the returned function is called, which returns the count.
func countOps(t *testing.T, op osmem.Op) func() int64 {
	var n atomic.Int64
	osmem.SetFault(func(o osmem.Op) error {
		if o == op {
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
			maps := countOps(t, osmem.OpMap)
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

// refuseWhileIdle makes the system refuse op while any region idle in s
// now is still mapped, idle or on its way out: the limit it models counts
// mapped memory, whoever holds it.
func refuseWhileIdle(t *testing.T, s *Shuffler, op osmem.Op) {
	t.Helper()
	var held []*osmem.Region
	s.aux.EachIdle(func(r *osmem.Region) { held = append(held, r) })
	if len(held) == 0 {
		t.Fatal("no region idle")
	}
	osmem.SetFault(func(o osmem.Op) error {
		if o != op {
			return nil
		}
		for _, r := range held {
			if len(r.Data) != 0 {
				return osmem.ErrInjected
			}
		}
		return nil
	})
	t.Cleanup(func() { osmem.SetFault(nil) })
}

// TestIdleGivenBack: a refused lock or mapping gives back the idle
// regions, which hold memory the limit counts, before it counts as a
// refusal, whichever shard made them and whether or not that shard is
// busy, and wherever the memory was wanted: an Alloc, a Shuffle's fresh
// arenas, a background cycle's spare. Kept under each shard's lock, a
// region of a busy shard stayed and the Alloc failed, and a Shuffle or a
// spare, which gave back nothing, failed or went unlocked.
func TestIdleGivenBack(t *testing.T) {
	cases := []struct {
		name  string
		mode  LockMode
		op    osmem.Op
		setup func(t *testing.T, s *Shuffler)
		do    func(t *testing.T, s *Shuffler) error
	}{
		{"alloc/strict", LockStrict, osmem.OpLock, nil, allocBeside},
		{"alloc/best-effort", LockBestEffort, osmem.OpLock, nil, allocBeside},
		{"alloc/mmap", LockBestEffort, osmem.OpMap, nil, allocBeside},
		{"shuffle/strict", LockStrict, osmem.OpLock, fill0, func(t *testing.T, s *Shuffler) error {
			return s.Shuffle()
		}},
		{"cycle/strict", LockStrict, osmem.OpLock, fill0, cycleOnce},
		{"cycle/best-effort", LockBestEffort, osmem.OpLock, fill0, cycleOnce},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			needLockRoom(t, 64<<10) // only a locked region goes idle
			s := newTest(t, WithShards(2), WithArenaSize(4096), WithLockMode(tc.mode))
			s.replayShard = func() uint32 { return 0 }
			if tc.setup != nil {
				tc.setup(t, s)
			}
			idleOne(t, s, 1)
			refuseWhileIdle(t, s, tc.op)
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

// fill0 puts three entries of a 4 KiB arena each in shard 0.
func fill0(t *testing.T, s *Shuffler) { allocN(t, s, 3, 4096-s.shards[0].Overhead()) }

// cycleOnce runs one background cycle, which maps a spare for each shard.
func cycleOnce(t *testing.T, s *Shuffler) error {
	oneCycle(t, s)
	return nil
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

// TestIdleGivenBackToRelock: the memory-lock limit is the process's, so an
// idle region of one shard holds room another shard's unlocked arena needs.
// Shard 0 holds an entry in an arena the system would not lock; shard 1's
// emptied arena goes idle; when shard 0 then releases a locked arena, the
// relock that follows gives the idle region back and locks the arena.
func TestIdleGivenBackToRelock(t *testing.T) {
	needLockRoom(t, 64<<10) // only a locked region goes idle
	s := newTest(t, WithShards(2), WithArenaSize(4096))
	sh := &s.shards[0]
	size := 4096 - sh.Overhead()
	osmem.SetFault(func(o osmem.Op) error {
		if o == osmem.OpLock {
			return osmem.ErrInjected
		}
		return nil
	})
	sh.mu.Lock()
	_, err := sh.alloc(size, 1) // unlocked
	osmem.SetFault(nil)
	var h Handle
	if err == nil {
		h, err = sh.alloc(size, 1)
	}
	if err == nil {
		_, err = sh.alloc(size, 1)
	}
	sh.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if u := s.Stats().UnlockedBytes; u != 4096 {
		t.Fatalf("%d bytes unlocked, want 4096", u)
	}
	idleOne(t, s, 1)
	refuseWhileIdle(t, s, osmem.OpLock)
	if err := s.Free(h); err != nil { // unmaps its locked arena, and relocks
		t.Fatal(err)
	}
	osmem.SetFault(nil)
	mustCheck(t, s)
	if st := s.Stats(); st.UnlockedBytes != 0 || s.aux.IdleBytes() != 0 {
		t.Errorf("%d bytes unlocked, %d idle: want none", st.UnlockedBytes, s.aux.IdleBytes())
	}
}

// TestIdleGivenBackOtherShuffler: two Shufflers in one process share its
// memory-lock limit, so a refusal in one gives back the other's idle
// regions too.
func TestIdleGivenBackOtherShuffler(t *testing.T) {
	needLockRoom(t, 64<<10) // only a locked region goes idle
	a := newTest(t, WithShards(2), WithArenaSize(4096))
	b := newTest(t, WithShards(1), WithArenaSize(4096), WithLockMode(LockStrict))
	idleOne(t, a, 1)
	refuseWhileIdle(t, a, osmem.OpLock)
	_, err := Alloc[byte](b, 64)
	osmem.SetFault(nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.LockFailures != 0 || a.aux.IdleBytes() != 0 {
		t.Errorf("%d lock failures, %d bytes idle in the other Shuffler: want none", st.LockFailures, a.aux.IdleBytes())
	}
}

// TestIdleGivenBackDuringGiveBack: a refusal while another goroutine is
// giving the idle regions back, whose unmaps have not yet returned the
// room, waits for that give-back and tries again, rather than count a
// refusal the give-back under way relieves. Here an Alloc's refusal gives
// back a region whose unmap takes until a Shuffle's lock is refused too.
func TestIdleGivenBackDuringGiveBack(t *testing.T) {
	needLockRoom(t, 64<<10) // only a locked region goes idle
	s := newTest(t, WithShards(2), WithArenaSize(4096), WithLockMode(LockStrict))
	s.replayShard = func() uint32 { return 0 }
	fill0(t, s)
	idleOne(t, s, 1)
	var held []*osmem.Region
	s.aux.EachIdle(func(r *osmem.Region) { held = append(held, r) })
	var refusals atomic.Int32
	inUnmap, second := make(chan struct{}), make(chan struct{})
	var unmaps atomic.Int32
	osmem.SetFault(func(o osmem.Op) error {
		switch {
		case o == osmem.OpLock && len(held[0].Data) != 0:
			if refusals.Add(1) == 2 {
				close(second)
			}
			return osmem.ErrInjected
		case o == osmem.OpUnmap && unmaps.Add(1) == 1:
			close(inUnmap)
			select { // the give-back's unmap, slow (a TLB shootdown)
			case <-second:
			case <-time.After(2 * time.Second):
			}
		}
		return nil
	})
	defer osmem.SetFault(nil)
	var allocErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, allocErr = Alloc[byte](s, 3*4096)
	}()
	<-inUnmap
	shuffleErr := s.Shuffle()
	<-done
	osmem.SetFault(nil)
	mustCheck(t, s)
	if st := s.Stats(); allocErr != nil || shuffleErr != nil || st.LockFailures != 0 {
		t.Errorf("Alloc: %v; Shuffle: %v; %d lock failures: want no error and none", allocErr, shuffleErr, st.LockFailures)
	}
}

// TestCloseWaitsForGiveBack: a Close while another Shuffler's refusal is
// giving this one's idle regions back, its unmap not yet returned, waits
// for that unmap. It used to find the pool already emptied and return at
// once: with the region still mapped and locked, which Stats of the
// closed Shuffler counted, or, when that unmap was then refused, left on
// the list Close's last Retry had already been through, mapped for good.
func TestCloseWaitsForGiveBack(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		t.Run(map[bool]string{false: "slow", true: "refused"}[refuse], func(t *testing.T) {
			needLockRoom(t, 64<<10) // only a locked region goes idle
			// Another Shuffler's idle region, unmapped first, would be the
			// one the hook holds.
			store.GiveBackIdle(store.IdleDrains())
			s := newTest(t, WithShards(1), WithArenaSize(4096))
			idleOne(t, s, 0)
			inUnmap, release := make(chan struct{}), make(chan struct{})
			var unmaps atomic.Int32
			osmem.SetFault(func(o osmem.Op) error {
				if o == osmem.OpUnmap && unmaps.Add(1) == 1 {
					close(inUnmap)
					<-release // a slow munmap (a TLB shootdown)
					if refuse {
						return osmem.ErrInjected
					}
				}
				return nil
			})
			defer osmem.SetFault(nil)
			gaveBack := make(chan bool)
			// Another Shuffler's refused mmap or mlock.
			go func() { gaveBack <- store.GiveBackIdle(store.IdleDrains()) }()
			select {
			case <-inUnmap:
			case <-time.After(10 * time.Second):
				t.Fatal("the give-back did not unmap the idle region")
			}
			closed := make(chan error, 1)
			go func() { closed <- s.Close() }()
			var closeErr error
			select {
			case closeErr = <-closed:
				t.Errorf("Close returned %v during the give-back's unmap of its idle region", closeErr)
				close(release)
			case <-time.After(50 * time.Millisecond):
				close(release)
				select {
				case closeErr = <-closed:
				case <-time.After(10 * time.Second):
					t.Fatal("Close did not return once the give-back's unmap had")
				}
			}
			<-gaveBack
			if closeErr != nil && !refuse {
				t.Errorf("Close: %v", closeErr)
			}
			osmem.SetFault(nil)
			st := s.Stats()
			if st.MappedBytes != 0 || st.LockedBytes != 0 || s.aux.Waiting() != 0 {
				t.Errorf("after Close: %d bytes mapped, %d locked, %d regions waiting to be unmapped: want none", st.MappedBytes, st.LockedBytes, s.aux.Waiting())
			}
		})
	}
}
