package memshuffle

import (
	"testing"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestShuffleInPlaceWithoutMemory: the shuffle in place of a shard whose
// arenas its entries fill exactly, with no place to spare, works when the
// system maps nothing, as Shuffle's doc says it needs no new memory. It
// used to map a region for one entry to rotate the permutation's cycles
// through, and when that was refused (an exhausted RLIMIT_MEMLOCK under
// LockStrict, say) it fell back to fresh arenas, which were refused too:
// Shuffle failed with ErrOutOfMemory and moved nothing. The cycles are
// now rotated a chunk at a time through the shard's keystream scratch,
// in the Shuffler's own locked region.
func TestShuffleInPlaceWithoutMemory(t *testing.T) {
	for _, c := range []struct {
		cipher  Cipher
		size, n int
	}{{AES256CTR, minInPlaceSize, 2048}, {AES256CTR, 1000 - 8, 1024}, {AES256GCM, 4096 - 16, 256}} {
		s := newTest(t, WithShards(1), WithArenaSize(4096), WithCipher(c.cipher))
		m := model{}
		ext := c.size + s.shards[0].Overhead()
		var hs []Handle
		n := c.n // exactly one arena's worth once shuffled
		for i := range n {
			hs = append(hs, allocPattern(t, s, m, c.size, i*5))
		}
		if err := s.Shuffle(); err != nil {
			t.Fatal(err)
		}
		sh := &s.shards[0]
		places, mapped := 0, 0
		for _, a := range sh.Arenas.List() {
			if a != nil {
				places += len(a.Mem) / ext
				mapped += len(a.Mem)
			}
		}
		if places != n {
			t.Fatalf("%d places for %d entries: not exactly full", places, n)
		}
		if mapped != n*ext {
			if st := s.Stats(); st.UnlockedBytes > 0 {
				// Entries kept in their locked arenas of 4096 bytes,
				// which entries of 992 bytes do not fill: no shuffle in
				// place there, as Shuffle's doc says.
				t.Skipf("the first Shuffle, at the memory-lock limit, left entries in arenas they do not fill: %d bytes for %d", mapped, n*ext)
			}
			t.Fatalf("%d bytes of arenas for %d entries of %d bytes: not exactly full", mapped, n, ext)
		}
		old := make([]uintptr, len(hs))
		for i, h := range hs {
			old[i] = uintptr(unsafe.Pointer(unsafe.SliceData(memOf(s, h))))
		}
		refuse(t, osmem.OpMap)
		if err := s.Shuffle(); err != nil {
			t.Fatalf("%v, %d-byte entries: Shuffle with no memory: %v", c.cipher, c.size, err)
		}
		osmem.SetFault(nil)
		stayed := 0
		for i, h := range hs {
			if uintptr(unsafe.Pointer(unsafe.SliceData(memOf(s, h)))) == old[i] {
				stayed++
			}
		}
		if stayed > 8 {
			t.Fatalf("%d of %d entries kept their place", stayed, n)
		}
		if !allZero(sh.scratch.KS[:]) {
			t.Fatal("keystream scratch not wiped")
		}
		mustCheck(t, s)
		verifyModel(t, s, m)
		s.Close()
	}
}
