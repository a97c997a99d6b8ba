package memshuffle

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestReclaimKeepsRotationBackup: an allocation that the system refuses
// memory during a key rotation gives back what it can, but not the backup
// buffer the rotation acquired before it switched keys. It used to drop
// it, and the rotation's next batch, which needed it again, stopped with
// ErrRotationIncomplete although the shard held no entry larger than when
// the rotation began: RotateKey promises that only such an entry can stop
// it part-way.
func TestReclaimKeepsRotationBackup(t *testing.T) {
	for _, c := range []Cipher{AES256GCM, ChaCha20Poly1305} {
		s := newTest(t, WithShards(1), WithArenaSize(4096), WithCipher(c))
		m := model{}
		// Several batches' worth, so the rotation lets go of the lock
		// between batches.
		for i := range 300 {
			allocPattern(t, s, m, 1000, i)
		}
		var refuse atomic.Bool
		osmem.SetFault(func(o osmem.Op) error {
			if o == osmem.OpMap && refuse.Load() {
				return osmem.ErrInjected
			}
			return nil
		})
		var allocErr error
		var once atomic.Bool
		afterRotationHold = func() {
			if !once.CompareAndSwap(false, true) {
				return
			}
			// From here on the system maps nothing: the rotation must
			// finish with what it acquired.
			refuse.Store(true)
			_, allocErr = Alloc[byte](s, 100_000)
		}
		err := s.RotateKey(nil, nil)
		afterRotationHold = nil
		refuse.Store(false)
		osmem.SetFault(nil)
		if !errors.Is(allocErr, ErrOutOfMemory) {
			t.Fatalf("%v: Alloc with no memory: %v", c, allocErr)
		}
		if err != nil {
			t.Fatalf("%v: RotateKey: %v", c, err)
		}
		mustCheck(t, s)
		checkModel(t, s, m)
	}
}

// TestShuffleKeepsRotationBackup: a Shuffle that leaves a shard without
// entries while a key rotation is under way keeps the backup buffer the
// rotation acquired. It used to give it back, and an entry no larger than
// those the shard held when the rotation prepared, made before the switch
// of keys, then needed a buffer the system refused: ErrRotationIncomplete.
func TestShuffleKeepsRotationBackup(t *testing.T) {
	for _, c := range []Cipher{AES256GCM, ChaCha20Poly1305} {
		s := newTest(t, WithShards(1), WithArenaSize(4096), WithCipher(c))
		var hs []Handle
		for i := range 4 {
			hs = append(hs, allocPattern(t, s, model{}, 1000, i))
		}
		var refuse atomic.Bool
		osmem.SetFault(func(o osmem.Op) error {
			if o == osmem.OpMap && refuse.Load() {
				return osmem.ErrInjected
			}
			return nil
		})
		m := model{}
		var hookErr error
		beforeRotationSwitch = func() {
			for _, h := range hs {
				if err := s.Free(h); err != nil {
					hookErr = err
					return
				}
			}
			if err := s.Shuffle(); err != nil {
				hookErr = err
				return
			}
			// Made without a Rent, which would map a buffer of its own.
			h, err := Alloc[byte](s, 1000)
			if err != nil {
				hookErr = err
				return
			}
			m[h] = make([]byte, 1000)
			refuse.Store(true)
		}
		err := s.RotateKey(nil, nil)
		beforeRotationSwitch = nil
		refuse.Store(false)
		osmem.SetFault(nil)
		if hookErr != nil {
			t.Fatal(hookErr)
		}
		if err != nil {
			t.Fatalf("%v: RotateKey: %v", c, err)
		}
		mustCheck(t, s)
		checkModel(t, s, m)
	}
}
