package memshuffle

import (
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestAEADEntriesFillArenas: entries of 32 KiB under AES256GCM, 32,784
// bytes with their tag, share arenas two to one. Each took an arena of 64
// KiB of its own (mapped twice the data), so that under a memory-lock
// limit half as many fit as under AES256CTR.
func TestAEADEntriesFillArenas(t *testing.T) {
	if osmem.PageSize() > 4096 {
		t.Skip("with pages over 4 KiB, fitWhole cannot add less than a quarter of a 64 KiB arena")
	}
	for _, c := range []Cipher{AES256CTR, AES256GCM, ChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			s := newTest(t, WithShards(1), WithCipher(c))
			for range 12 {
				if _, err := Alloc[byte](s, 32<<10); err != nil {
					t.Fatal(err)
				}
			}
			st := s.Stats()
			if r := float64(st.MappedBytes) / float64(st.LiveBytes); r > 1.2 {
				t.Fatalf("12 entries of 32 KiB: %d bytes mapped for %d (%.2fx) in %d arenas", st.MappedBytes, st.LiveBytes, r, st.Arenas)
			}
			mustCheck(t, s)
		})
	}
}

// TestLargeIdleCurSparesFittedArenas: the give-back at the memory-lock
// limit takes an emptied current arena mapped for an entry larger than
// the shard's arenas, and not one a few pages larger to fit entries of one
// size, which the next such entry would map again.
func TestLargeIdleCurSparesFittedArenas(t *testing.T) {
	// The default arena would shrink under a small memory-lock limit, and
	// an entry of 32 KiB then need one larger than the shard's.
	s := newTest(t, WithShards(1), WithCipher(AES256GCM), WithArenaSize(64<<10))
	sh := &s.shards[0]
	largeAfter := func(size int) bool {
		allocFree(t, s, size)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		c := sh.Arenas.Cur()
		if c == nil || c.Live != 0 {
			t.Fatalf("after an entry of %d bytes came and went, no empty current arena", size)
		}
		if !c.Reg.Locked {
			// Only a locked arena holds room the give-back could win.
			t.Skipf("the memory-lock limit (%d) left the arena of an entry of %d bytes unlocked", osmem.LockLimit(), size)
		}
		return sh.largeIdleCur()
	}
	if largeAfter(32 << 10) {
		t.Error("the arena fitted to 32 KiB AES256GCM entries counts as larger than the shard's")
	}
	if !largeAfter(900 << 10) {
		t.Error("the arena of an entry of 900 KiB does not count as larger than the shard's")
	}
}

// TestShuffleDropsIdleBackup: a Shuffle gives back a shard's idle backup
// buffer before it maps fresh arenas, whose room at the memory-lock limit
// it may be; one that an entry still rented needs stays.
func TestShuffleDropsIdleBackup(t *testing.T) {
	s := newTest(t, WithShards(1), WithCipher(AES256GCM))
	h, err := Alloc[byte](s, 1000)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, s, h) // a Rent and Return: the backup stays with the shard
	if !backups(s)[0] {
		t.Fatal("no backup buffer after a Rent")
	}
	if _, err := RentSlice[byte](s, h); err != nil {
		t.Fatal(err)
	}
	if err := s.Shuffle(); err != nil {
		t.Fatal(err)
	}
	if !backups(s)[0] {
		t.Fatal("a Shuffle dropped the backup buffer of a shard with a rented entry")
	}
	if err := s.Return(h); err != nil {
		t.Fatal(err)
	}
	if err := s.Shuffle(); err != nil {
		t.Fatal(err)
	}
	if backups(s)[0] {
		t.Fatal("the idle backup buffer outlived a Shuffle")
	}
	mustCheck(t, s)
}

// allocFree makes an entry of size bytes and frees it.
func allocFree(t *testing.T, s *Shuffler, size int) {
	t.Helper()
	h, err := Alloc[byte](s, size)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Free(h); err != nil {
		t.Fatal(err)
	}
}
