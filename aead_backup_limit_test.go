package memshuffle

import (
	"errors"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// backups reports which shards of s hold a backup buffer.
func backups(s *Shuffler) []bool {
	held := make([]bool, len(s.shards))
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		held[i] = sh.backup != nil
		sh.mu.Unlock()
	}
	return held
}

// TestRefusedRotationGivesBackBackups: a RotateKey whose backup buffer
// for the second shard is refused gives back the one it took for the
// first. Kept, it held the room the rotation failed for, and at the
// memory-lock limit (nobody, ulimit -l 64, secret memory, AES256GCM)
// every Shuffle after that one refused RotateKey failed.
func TestRefusedRotationGivesBackBackups(t *testing.T) {
	for _, c := range []Cipher{AES256GCM, ChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			s := newTest(t, WithShards(2), WithCipher(c))
			// Until both shards hold entries: a goroutine's run of
			// allocations moves to another shard after hintRun.
			used := map[uint32]bool{}
			for n := 0; len(used) < 2; n++ {
				h, err := Alloc[byte](s, 1000)
				if err != nil || n > 100*hintRun {
					t.Fatalf("after %d entries in shards %v: %v", n, used, err)
				}
				used[h.shard()] = true
			}
			for i := range s.shards {
				sh := &s.shards[i]
				sh.mu.Lock()
				sh.dropBackup()
				sh.mu.Unlock()
			}
			calls := failNth(t, osmem.OpMap, 1)
			err := s.RotateKey(nil, nil)
			if calls.Load() < 2 || !errors.Is(err, ErrOutOfMemory) {
				t.Fatalf("RotateKey with its second mmap refused (%d mmaps): %v, want ErrOutOfMemory", calls.Load(), err)
			}
			osmem.SetFault(nil)
			if held := backups(s); held[0] || held[1] {
				t.Fatalf("after the refused rotation, shards hold backups %v", held)
			}
			mustCheck(t, s)
			if err := s.RotateKey(nil, nil); err != nil {
				t.Fatal(err)
			}
			mustCheck(t, s)
		})
	}
}

// TestBackupRelockedWhenRoomReturns: under LockBestEffort, a backup buffer
// mapped while the system refused locks is locked by the next Shuffle
// once it allows them, even while an entry is rented and the shard keeps
// the buffer: it stayed unlocked for as long as the shard held it.
func TestBackupRelockedWhenRoomReturns(t *testing.T) {
	s := newTest(t, WithShards(1), WithCipher(AES256GCM))
	h, err := Alloc[byte](s, 1000)
	if err != nil {
		t.Fatal(err)
	}
	sh := &s.shards[0]
	sh.mu.Lock()
	sh.dropBackup()
	sh.mu.Unlock()
	refuse(t, osmem.OpLock)
	if _, err := RentSlice[byte](s, h); err != nil {
		t.Fatal(err)
	}
	if held := backups(s); !held[0] {
		t.Fatal("the Rent mapped no backup buffer")
	}
	if u := s.Stats().UnlockedBytes; u == 0 {
		t.Fatal("the backup buffer mapped with locks refused counts as locked")
	}
	osmem.SetFault(nil)
	if err := s.Shuffle(); err != nil {
		t.Fatal(err)
	}
	if u := s.Stats().UnlockedBytes; u != 0 {
		t.Fatalf("after a Shuffle with locks allowed, %d bytes unlocked", u)
	}
	if err := s.Return(h); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, s)
}
