package memshuffle

import (
	"bytes"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestRotateKeyKeepsPreparedBackups: in the authenticated modes a rotation
// maps every shard's backup buffer before it switches keys, so that it
// cannot stop part-way for want of memory. An Alloc the system refuses
// memory while the rotation runs reclaims what it can in its shard; it
// must not give back the buffer the rotation acquired, or the rotation,
// with the system still refusing memory (the memlock limit reached, say),
// stops with ErrRotationIncomplete though no entry grew.
func TestRotateKeyKeepsPreparedBackups(t *testing.T) {
	// The refused Allocs come between the two phases of the rotation, or
	// after its first batch.
	hooks := []struct {
		name string
		hook *func()
	}{
		{"before-switch", &beforeRotationSwitch},
		{"after-first-batch", &afterRotationHold},
	}
	for _, c := range []Cipher{AES256GCM, ChaCha20Poly1305} {
		for _, hk := range hooks {
			t.Run(c.String()+"/"+hk.name, func(t *testing.T) {
				s := newTest(t, WithCipher(c), WithShards(1), WithArenaSize(4096))
				m := model{}
				for i := range 60 {
					src := bytes.Repeat([]byte{byte(i)}, 100+i*300)
					h, err := CopyFrom(s, bytes.Clone(src))
					if err != nil {
						t.Fatal(err)
					}
					m[h] = src
				}
				calls := 0
				*hk.hook = func() {
					if calls++; calls > 1 {
						return
					}
					// From here on the system maps nothing more; Allocs
					// that need an arena fail and reclaim in the shard.
					osmem.SetFault(func(o osmem.Op) error {
						if o == osmem.OpMap {
							return osmem.ErrInjected
						}
						return nil
					})
					for range 40 {
						if _, err := Alloc[byte](s, 1<<20); err == nil {
							t.Error("Alloc succeeded with every map refused")
						}
					}
				}
				t.Cleanup(func() { *hk.hook = nil; osmem.SetFault(nil) })
				err := s.RotateKey(nil, nil)
				*hk.hook = nil
				osmem.SetFault(nil)
				if calls == 0 {
					t.Fatal("the hook never ran")
				}
				if err != nil {
					t.Fatalf("RotateKey: %v", err)
				}
				verifyModel(t, s, m)
				mustCheck(t, s)
			})
		}
	}
}

// TestBackupGrowsInPlaceOfTheOld: in the authenticated modes a Rent or
// View keeps the ciphertext in the shard's backup buffer while it opens
// the entry, and a larger entry needs a larger buffer. The old buffer
// holds nothing between uses, so it must be given back before the larger
// one is mapped: the room it frees can be exactly what is missing (at the
// memlock limit as user nobody under ulimit -l 8192, with LockStrict,
// while buffers were locked memory, a View of a 1 MiB entry failed with
// ErrLockFailed after one of 16 bytes). Here the system has room for one
// buffer at a time.
func TestBackupGrowsInPlaceOfTheOld(t *testing.T) {
	for _, c := range []Cipher{AES256GCM, ChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			s := newTest(t, WithCipher(c), WithShards(1))
			small, err := CopyFrom(s, []byte("a small secret"))
			if err != nil {
				t.Fatal(err)
			}
			large, err := Alloc[byte](s, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if err := BorrowViewSlice(s, small, func([]byte) error { return nil }); err != nil {
				t.Fatal(err)
			}
			if s.Stats().BackupBytes == 0 {
				t.Fatal("no backup buffer after a View")
			}
			// On the goroutine that maps, which holds the shard or has let
			// go of it after it set the field.
			sh := &s.shards[0]
			osmem.SetFault(func(o osmem.Op) error {
				if o == osmem.OpMap && sh.backup != nil {
					return osmem.ErrInjected
				}
				return nil
			})
			t.Cleanup(func() { osmem.SetFault(nil) })
			err = BorrowViewSlice(s, large, func([]byte) error { return nil })
			osmem.SetFault(nil)
			if err != nil {
				t.Fatalf("View of the large entry: %v", err)
			}
			mustCheck(t, s)
		})
	}
}
