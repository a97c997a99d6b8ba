package memshuffle

import (
	"bytes"
	"errors"
	mrand "math/rand/v2"
	"testing"
)

// midRotation reports whether some shard of s is part-way through a
// rotation: switched to the new key, with entries under the old one
// behind it and before it.
func midRotation(s *Shuffler) bool {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		mid := sh.rot.prev != nil && sh.rot.cursor > 0 && sh.rot.cursor < sh.Slots.Len()
		sh.mu.Unlock()
		if mid {
			return true
		}
	}
	return false
}

// TestRotateKeyInterleaved runs the operation model between every two
// batches of a rotation, in every cipher mode: entries rented, viewed,
// written, returned, allocated, freed, shuffled, moved by background steps
// and expired while their shard holds entries under both keys, with the
// invariant check (no resting entry below its shard's rotation base behind
// the batches) after every step. Borrows left open across the end of the
// rotation are returned under the new key, and every entry keeps its value.
func TestRotateKeyInterleaved(t *testing.T) {
	for _, c := range allCiphers {
		t.Run(c.String(), func(t *testing.T) {
			s := newTest(t, WithShards(2), WithArenaSize(4096), WithCipher(c))
			src := &randSource{r: mrand.New(mrand.NewPCG(uint64(c), 11)), left: 1 << 30}
			m := newOpModel(t, s, src)
			// Enough data for dozens of batches per shard.
			for range 150 {
				m.op(14)
			}
			for range 300 {
				m.op(m.byte() % 8)
			}
			mid := 0
			afterRotationHold = func() {
				if midRotation(s) {
					mid++
				}
				for range 4 {
					// Everything but RotateKey, which waits for this one,
					// and Purge, which would end the test.
					op := m.byte() % 15
					if op == 8 {
						continue
					}
					m.op(op)
					m.step++
					if err := s.check(); err != nil {
						m.fatalf("after op %d, mid-rotation: %v", m.last, err)
					}
					m.spotCheck()
				}
			}
			t.Cleanup(func() { afterRotationHold = nil })
			for range 2 {
				if err := s.RotateKey(nil, nil); err != nil {
					t.Fatal(err)
				}
			}
			afterRotationHold = nil
			if mid < 10 {
				t.Fatalf("only %d batches ended with a shard part-way: the case was not made", mid)
			}
			if got := s.Stats().KeyRotations; got != 2 {
				t.Fatalf("KeyRotations %d, want 2", got)
			}
			for i := range s.shards {
				if s.shards[i].rot.prev != nil {
					t.Fatalf("shard %d still rotating", i)
				}
			}
			src.left = 0
			m.run() // returns every borrow, compares every entry
		})
	}
}

// TestRotateKeyBatchEntries: in the authenticated modes, one hold of a
// shard lock by a rotation re-encrypts at most rotateBatchEntries small
// entries, which each cost an open and a seal; the byte bound alone let a
// hold take 1,365 entries of 32 bytes.
func TestRotateKeyBatchEntries(t *testing.T) {
	for _, c := range []Cipher{AES256GCM, ChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			s := newTest(t, WithShards(1), WithCipher(c))
			for range 4 * rotateBatchEntries {
				if _, err := Alloc[byte](s, 32); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.RotateKey(nil, nil); err != nil {
				t.Fatal(err)
			}
			ext := int64(32 + s.shards[0].Overhead())
			if got, want := s.rotator.holds.bytes.Load(), rotateBatchEntries*ext; got != want {
				t.Errorf("the largest hold re-encrypted %d bytes, %d entries; want %d", got, got/ext, rotateBatchEntries)
			}
		})
	}
}

// TestRotateKeyBatchBound counts, in code, what one hold of a shard lock
// by a rotation re-encrypts: never more than rotateBatchBytes, unless a
// single entry is larger, in which case that entry alone. A shard of many
// megabytes takes many holds, not one.
func TestRotateKeyBatchBound(t *testing.T) {
	for _, c := range allCiphers {
		t.Run(c.String(), func(t *testing.T) {
			s := newTest(t, WithShards(2), WithCipher(c))
			total := 0
			for i := range 600 {
				n := 1 + (i*7919)%16000
				if _, err := Alloc[byte](s, n); err != nil {
					t.Fatal(err)
				}
				total += n
			}
			if err := s.RotateKey(nil, nil); err != nil {
				t.Fatal(err)
			}
			got, holds := s.rotator.holds.bytes.Load(), s.rotator.holds.holds.Load()
			if got > rotateBatchBytes || got < rotateBatchBytes/2 {
				t.Fatalf("one hold re-encrypted %d bytes, want (%d, %d]", got, rotateBatchBytes/2, rotateBatchBytes)
			}
			if min := uint64(total / rotateBatchBytes); holds < min {
				t.Fatalf("%d holds for %d bytes, want at least %d", holds, total, min)
			}

			// An entry larger than a batch goes alone.
			big := 3 * rotateBatchBytes
			if _, err := Alloc[byte](s, big); err != nil {
				t.Fatal(err)
			}
			s.rotator.holds.bytes.Store(0)
			if err := s.RotateKey(nil, nil); err != nil {
				t.Fatal(err)
			}
			if got, want := s.rotator.holds.bytes.Load(), int64(big+s.shards[0].Overhead()); got != want {
				t.Fatalf("with a %d-byte entry the largest hold re-encrypted %d bytes, want %d", big, got, want)
			}
		})
	}
}

// TestRotateKeyPurgeMidRotation ends the Shuffler, by Purge or by Close,
// between two batches of a rotation: RotateKey returns ErrClosed, nothing
// faults, and the closed Shuffler passes its checks.
func TestRotateKeyPurgeMidRotation(t *testing.T) {
	for _, c := range allCiphers {
		for _, end := range []string{"Purge", "Close"} {
			t.Run(c.String()+"/"+end, func(t *testing.T) {
				s := newTest(t, WithShards(2), WithCipher(c))
				var hs []Handle
				for i := range 100 {
					h, err := CopyFrom(s, bytes.Repeat([]byte{byte(i)}, 4000))
					if err != nil {
						t.Fatal(err)
					}
					hs = append(hs, h)
				}
				batches := 0
				afterRotationHold = func() {
					if batches++; batches == 3 {
						if end == "Purge" {
							_ = s.Purge()
						} else {
							_ = s.Close()
						}
					}
				}
				t.Cleanup(func() { afterRotationHold = nil })
				if err := s.RotateKey(nil, nil); !errors.Is(err, ErrClosed) {
					t.Fatalf("RotateKey: %v, want ErrClosed", err)
				}
				afterRotationHold = nil
				if _, err := RentSlice[byte](s, hs[0]); !errors.Is(err, ErrClosed) {
					t.Fatalf("Rent after %s: %v", end, err)
				}
				mustCheck(t, s)
			})
		}
	}
}

// TestCheckFindsRotationBase plants an entry below its shard's rotation
// base after a finished rotation: the invariant check must report it.
func TestCheckFindsRotationBase(t *testing.T) {
	s, err := New(WithShards(1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h, err := Alloc[byte](s, 32)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RotateKey(nil, nil); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, s)
	sh := &s.shards[0]
	sl := sh.Slots.At(h.slot())
	saved := sl.Ctr()
	sl.SetCtr(sh.rot.base - 1)
	if err := s.check(); err == nil {
		t.Fatal("an entry below the rotation base of a finished shard went unnoticed")
	}
	sl.SetCtr(saved)
	mustCheck(t, s)
}
