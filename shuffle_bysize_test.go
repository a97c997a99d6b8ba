package memshuffle

import (
	"errors"
	"slices"
	"testing"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestShuffleRefusedPermutesBySize refuses every mmap to a Shuffle of
// entries of four sizes (one of them alone), some rented: Shuffle reports
// ErrOutOfMemory, and still moves nearly every unrented entry, while the
// rented ones stay; every entry reads back unchanged.
func TestShuffleRefusedPermutesBySize(t *testing.T) {
	for _, c := range []Cipher{AES256CTR, AES256GCM} {
		t.Run(c.String(), func(t *testing.T) {
			s := newTest(t, WithShards(1), WithArenaSize(4096), WithCipher(c))
			m, rented := mixedSizes(t, s)
			before := placesOf(s, m)
			moved0 := s.Stats().BytesMoved
			refuse(t, osmem.OpMap)
			shuffleNoMemory(t, s)
			stayed := stayedIn(s, before)
			// 7 rented and the one entry of 100 bytes stay; of the
			// others, one in each size keeps its place on average.
			if stayed < 8 || stayed > 8+12 {
				t.Fatalf("%d of %d entries kept their place", stayed, len(m))
			}
			for _, h := range rented {
				if addrOf(s, h) != before[h] {
					t.Fatal("a rented entry moved")
				}
				if err := s.Return(h); err != nil {
					t.Fatal(err)
				}
			}
			if s.Stats().BytesMoved == moved0 {
				t.Fatal("Stats.BytesMoved did not count the moves")
			}
			osmem.SetFault(nil)
			verifyModel(t, s, m)
			mustCheck(t, s)
		})
	}
}

// shuffleNoMemory runs a Shuffle that must report memory refused, and the
// invariant check after it.
func shuffleNoMemory(t *testing.T, s *Shuffler) {
	t.Helper()
	if err := s.Shuffle(); !errors.Is(err, ErrOutOfMemory) {
		t.Fatalf("Shuffle with mmap refused: %v, want ErrOutOfMemory", err)
	}
	mustCheck(t, s)
}

// placesOf is where each entry of m is.
func placesOf(s *Shuffler, m model) map[Handle]uintptr {
	at := map[Handle]uintptr{}
	for h := range m {
		at[h] = addrOf(s, h)
	}
	return at
}

// stayedIn counts the entries still where before has them.
func stayedIn(s *Shuffler, before map[Handle]uintptr) int {
	n := 0
	for h, a := range before {
		if addrOf(s, h) == a {
			n++
		}
	}
	return n
}

// mixedSizes allocates 700 entries of 24, 32 and 48 bytes and one of 100
// into s, and rents 7 of them, which it returns with the model.
func mixedSizes(t *testing.T, s *Shuffler) (m model, rented []Handle) {
	t.Helper()
	m = model{}
	for i := range 700 {
		size := []int{32, 48, 24}[i%3]
		if i == 699 {
			size = 100
		}
		h := allocPattern(t, s, m, size, i)
		if i%100 == 1 {
			if _, err := RentSlice[byte](s, h); err != nil {
				t.Fatal(err)
			}
			rented = append(rented, h)
		}
	}
	return m, rented
}

// TestPermuteBySizeKeepsPlaces runs permuteBySize itself: each entry goes
// to a place an entry of its size and alignment held, no place is taken
// twice, and the rented entries stay.
func TestPermuteBySizeKeepsPlaces(t *testing.T) {
	s := newTest(t, WithShards(1), WithArenaSize(4096))
	m, rented := mixedSizes(t, s)
	for range 8 {
		h, err := Alloc[uint64](s, 3) // 24 bytes, aligned to 8
		if err != nil {
			t.Fatal(err)
		}
		m[h] = make([]byte, 24)
	}
	type kind struct{ size, align int }
	kindOf := map[Handle]kind{}
	places := map[kind]map[uintptr]bool{}
	before := map[Handle]uintptr{}
	sh := &s.shards[0]
	sh.mu.Lock()
	for h := range m {
		sl := sh.Slots.At(h.slot())
		k := kind{int(sl.Size), sl.Align()}
		a := uintptr(unsafe.Pointer(&sh.Bytes(sl)[0]))
		kindOf[h], before[h] = k, a
		if places[k] == nil {
			places[k] = map[uintptr]bool{}
		}
		places[k][a] = true
	}
	moved := sh.permuteBySize()
	sh.mu.Unlock()
	mustCheck(t, s)
	taken := map[uintptr]bool{}
	var stayed int
	for h := range m {
		a := addrOf(s, h)
		if !places[kindOf[h]][a] || taken[a] {
			t.Fatalf("entry of %v moved to %#x: no entry of its kind held it, or another took it", kindOf[h], a)
		}
		taken[a] = true
		if a == before[h] {
			stayed++
		}
	}
	for _, h := range rented {
		if addrOf(s, h) != before[h] {
			t.Fatal("a rented entry moved")
		}
		s.Return(h)
	}
	if stayed > 8+12 || moved == 0 {
		t.Fatalf("%d of %d entries kept their place; %d bytes moved", stayed, len(m), moved)
	}
	verifyModel(t, s, m)
}

// TestShuffleRefusedAfterFrees refuses mmap to a Shuffle of a shard with
// holes: the entries are first packed into them, then permuted, and all
// read back unchanged.
func TestShuffleRefusedAfterFrees(t *testing.T) {
	s := newTest(t, WithShards(1), WithArenaSize(4096))
	m := model{}
	for i := range 2000 {
		if i%3 == 0 {
			allocFree(t, s, 40+8*(i%5))
			continue
		}
		allocPattern(t, s, m, 40+8*(i%5), i)
	}
	before := placesOf(s, m)
	refuse(t, osmem.OpMap)
	for range 3 {
		shuffleNoMemory(t, s)
	}
	stayed := stayedIn(s, before)
	if stayed > 20 {
		t.Fatalf("%d of %d entries kept their place over three Shuffles", stayed, len(m))
	}
	osmem.SetFault(nil)
	verifyModel(t, s, m)
}

// TestShuffleRefusedUniform holds the permutation a Shuffle without memory
// makes to what a Shuffle promises: over 400 Shuffles of 8 entries of one
// size, with mmap refused, an entry's new place is independent of its old
// place and of its age. Fails for a permutation that never leaves an entry
// in place, or for none.
func TestShuffleRefusedUniform(t *testing.T) {
	const n = 8
	s := newTest(t, WithShards(1), WithArenaSize(4096))
	hs := make([]Handle, n)
	for i := range hs {
		h, err := Alloc[byte](s, 32)
		if err != nil {
			t.Fatal(err)
		}
		hs[i] = h
	}
	// Another size in the same shard, which must not mix with the first.
	for range n {
		if _, err := Alloc[byte](s, 48); err != nil {
			t.Fatal(err)
		}
	}
	var sorted []uintptr
	for _, h := range hs {
		sorted = append(sorted, addrOf(s, h))
	}
	slices.Sort(sorted)
	place := func() []int {
		p := make([]int, n)
		for i, h := range hs {
			j, ok := slices.BinarySearch(sorted, addrOf(s, h))
			if !ok {
				t.Fatalf("entry %d left the places of its size", i)
			}
			p[i] = j
		}
		return p
	}
	refuse(t, osmem.OpMap)
	var byOld, byAge [8][8]int
	old := place()
	for range 400 {
		shuffleNoMemory(t, s)
		cur := place()
		for i := range n {
			byOld[old[i]][cur[i]]++
			byAge[i][cur[i]]++
		}
		old = cur
	}
	mustCheck(t, s)
	checkIndependent(t, &byOld, &byAge)
}

// lockedAt reports whether entry h sits in a locked arena.
func lockedAt(t *testing.T, s *Shuffler, h Handle) bool {
	t.Helper()
	sh, sl, err := s.lookup(h)
	if err != nil {
		t.Fatal(err)
	}
	defer sh.mu.Unlock()
	return sh.Arenas.Get(sl.Arena()).Reg.Locked
}

// TestShuffleRefusedKeepsLockedEntriesLocked: under LockBestEffort, with
// half the entries in arenas the system would not lock, a Shuffle refused
// its memory moves no entry out of locked memory (as Squeeze promises),
// where a Rent would decrypt it in memory the system may swap out: about
// 140 of 384 did (130 to 152 in runs) when locked and unlocked places
// were one kind. The entries
// still move, each among places like its own.
func TestShuffleRefusedKeepsLockedEntriesLocked(t *testing.T) {
	s := newTest(t, WithShards(1), WithArenaSize(4096), WithLockMode(LockBestEffort))
	m := model{}
	for range 300 {
		h, err := Alloc[byte](s, 32)
		if err != nil {
			t.Fatal(err)
		}
		m[h] = make([]byte, 32)
	}
	skipUnlockedShard(t, s, 0)
	refuse(t, osmem.OpLock)
	for range 300 {
		h, err := Alloc[byte](s, 32)
		if err != nil {
			t.Fatal(err)
		}
		m[h] = make([]byte, 32)
	}
	locked, unlocked := 0, 0
	was := map[Handle]bool{}
	for h := range m {
		was[h] = lockedAt(t, s, h)
		if was[h] {
			locked++
		} else {
			unlocked++
		}
	}
	if locked == 0 || unlocked == 0 {
		t.Fatalf("%d entries locked, %d unlocked: want some of each", locked, unlocked)
	}
	before := placesOf(s, m)
	osmem.SetFault(func(o osmem.Op) error {
		if o == osmem.OpMap || o == osmem.OpLock {
			return osmem.ErrInjected
		}
		return nil
	})
	shuffleNoMemory(t, s)
	out := 0
	for h := range m {
		if was[h] && !lockedAt(t, s, h) {
			out++
		}
	}
	if out > 0 {
		t.Fatalf("%d of %d entries moved out of locked memory", out, locked)
	}
	if stayed := stayedIn(s, before); stayed > len(m)/10 {
		t.Fatalf("%d of %d entries kept their place", stayed, len(m))
	}
	osmem.SetFault(nil)
	verifyModel(t, s, m)
}

// TestShuffleRetriesRefusedShard: a shard whose fresh arena the system
// refused is shuffled again once the other shards have given back what
// they emptied, and the Shuffle succeeds when that second try does. At
// the limit the first shard, which holds most, needs that room: as user
// nobody under ulimit -l 8192, with secret memory, ChaCha20Poly1305 and
// 2.9 MB of entries, 5 Shuffles in 9 failed with ErrLockFailed.
func TestShuffleRetriesRefusedShard(t *testing.T) {
	s := newTest(t, WithShards(2), WithArenaSize(4096))
	m := model{}
	for len(shardsOf(m)) < 2 {
		allocPattern(t, s, m, 40, len(m))
	}
	for range 500 {
		h, err := Alloc[byte](s, 40)
		if err != nil {
			t.Fatal(err)
		}
		m[h] = make([]byte, 40)
	}
	old := regionsOf(s)
	calls := failNth(t, osmem.OpMap, 0)
	if err := s.Shuffle(); err != nil {
		t.Fatalf("Shuffle with its first mmap refused: %v", err)
	}
	if calls.Load() < 3 {
		t.Fatalf("%d mmaps: the refused shard was not shuffled again", calls.Load())
	}
	// Into fresh arenas, every shard: the refused one on its second try.
	for r := range regionsOf(s) {
		if old[r] {
			t.Fatal("a shard kept an arena of before the Shuffle")
		}
	}
	osmem.SetFault(nil)
	mustCheck(t, s)
	verifyModel(t, s, m)
}

// shardsOf is the set of shards m's entries are in.
func shardsOf(m model) map[uint32]bool {
	in := map[uint32]bool{}
	for h := range m {
		in[h.shard()] = true
	}
	return in
}

// regionsOf is the set of the regions of s's arenas.
func regionsOf(s *Shuffler) map[*osmem.Region]bool {
	in := map[*osmem.Region]bool{}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, a := range sh.Arenas.List() {
			if a != nil {
				in[a.Reg] = true
			}
		}
		sh.mu.Unlock()
	}
	return in
}
