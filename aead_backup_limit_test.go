package memshuffle

import (
	"bytes"
	"errors"
	"fmt"
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

// TestBackupIsPlainMemory: a backup buffer holds only the ciphertext of
// the entry being decrypted, so it takes neither locked memory nor room
// the memory-lock limit counts, in any lock mode, and Stats counts it in
// BackupBytes alone. Locked, it counted in LockedBytes, and under
// LockBestEffort at the limit in UnlockedBytes.
func TestBackupIsPlainMemory(t *testing.T) {
	for _, m := range []LockMode{LockBestEffort, LockStrict} {
		t.Run(fmt.Sprint(m), func(t *testing.T) {
			s := newOrSkip(t, WithShards(1), WithCipher(AES256GCM), WithLockMode(m))
			h, err := Alloc[byte](s, 1000)
			skipLockFailed(t, err)
			if err != nil {
				t.Fatal(err)
			}
			sh := &s.shards[0]
			sh.mu.Lock()
			sh.dropBackup()
			sh.mu.Unlock()
			before := s.Stats()
			if _, err := RentSlice[byte](s, h); err != nil {
				t.Fatal(err)
			}
			st := s.Stats()
			if held := backups(s); !held[0] {
				t.Fatal("the Rent mapped no backup buffer")
			}
			sh.mu.Lock()
			locked := sh.backup.Locked
			sh.mu.Unlock()
			if locked || st.BackupBytes < 1000+16 || before.BackupBytes != 0 ||
				st.LockedBytes != before.LockedBytes || st.UnlockedBytes != before.UnlockedBytes {
				t.Errorf("backup locked %v; BackupBytes %d -> %d, LockedBytes %d -> %d, UnlockedBytes %d -> %d",
					locked, before.BackupBytes, st.BackupBytes, before.LockedBytes, st.LockedBytes, before.UnlockedBytes, st.UnlockedBytes)
			}
			if err := s.Return(h); err != nil {
				t.Fatal(err)
			}
			mustCheck(t, s)
		})
	}
}

// TestRotationAtLockLimit: in the authenticated modes, a rotation of a
// LockStrict Shuffler whose memory the system will lock no more
// completes, and every entry reads back under the new key. The backup
// buffers a rotation acquires for every shard before it switches keys
// were locked memory: at the limit the rotation failed with
// ErrLockFailed, and its entries stayed under the old key (as user nobody
// at 8 MiB, with entries of up to 64 KiB filling the limit, 4 of 182
// rotations completed).
func TestRotationAtLockLimit(t *testing.T) {
	for _, c := range []Cipher{AES256GCM, ChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			s := newOrSkip(t, WithShards(2), WithCipher(c), WithLockMode(LockStrict))
			pick := uint32(0)
			s.replayShard = func() uint32 { return pick }
			m := model{}
			for i := range 8 {
				pick = uint32(i % 2)
				want := make([]byte, 100<<i)
				for k := range want {
					want[k] = byte(i + k)
				}
				h, err := CopyFrom(s, bytes.Clone(want))
				skipLockFailed(t, err)
				if err != nil {
					t.Fatal(err)
				}
				m[h] = want
			}
			for i := range s.shards {
				sh := &s.shards[i]
				sh.mu.Lock()
				sh.dropBackup()
				sh.mu.Unlock()
			}
			refuse(t, osmem.OpLock)
			if err := s.RotateKey(nil, nil); err != nil {
				t.Fatalf("RotateKey with every lock refused: %v", err)
			}
			osmem.SetFault(nil)
			if n := s.Stats().KeyRotations; n != 1 {
				t.Errorf("%d rotations counted, want 1", n)
			}
			verifyModel(t, s, m)
			mustCheck(t, s)
		})
	}
}

// TestRefusedBackupUnmapRetried: a backup buffer whose unmap the system
// refuses is kept, wiped, for Close to give back, as any other region is.
// Unmapped apart from the regions the Shuffler counts, one refused stayed
// mapped for the life of the process.
func TestRefusedBackupUnmapRetried(t *testing.T) {
	s := newTest(t, WithShards(1), WithCipher(AES256GCM))
	h, err := Alloc[byte](s, 1000)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, s, h) // a Rent, which maps the backup
	if held := backups(s); !held[0] {
		t.Fatal("the Rent mapped no backup buffer")
	}
	osmem.UnmapRefused() // none an earlier test left
	allow := refuse(t, osmem.OpUnmap)
	sh := &s.shards[0]
	sh.mu.Lock()
	sh.dropBackup()
	sh.mu.Unlock()
	allow()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n, _ := osmem.UnmapRefused(); n != 0 {
		t.Errorf("%d regions left mapped after Close: the refused backup was not tried again", n)
	}
}
