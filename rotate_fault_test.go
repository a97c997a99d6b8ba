package memshuffle

import (
	"errors"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

var allCiphers = []Cipher{AES256CTR, AES256GCM, ChaCha20Poly1305}

// rotateWorkload makes a Shuffler whose entries were all filled while small
// backup buffers sufficed, plus large zeroed entries never rented, so that
// rotating it in an authenticated mode needs new memory in every shard.
func rotateWorkload(t *testing.T, c Cipher, mode LockMode) (*Shuffler, model) {
	t.Helper()
	s := newOrSkip(t, WithShards(4), WithArenaSize(4096), WithLockMode(mode), WithCipher(c))
	m := model{}
	for i := range 40 {
		src := make([]byte, 16+i)
		for j := range src {
			src[j] = byte(i*7 + j)
		}
		want := append([]byte(nil), src...)
		h, err := CopyFrom(s, src)
		skipLockFailed(t, err)
		if err != nil {
			t.Fatal(err)
		}
		m[h] = want
	}
	for i := range 64 {
		h, err := Alloc[byte](s, 3000+50*i)
		skipLockFailed(t, err)
		if err != nil {
			t.Fatal(err)
		}
		m[h] = make([]byte, 3000+50*i)
	}
	return s, m
}

// TestFaultsRotateKey makes each operating-system call of a RotateKey fail
// in turn, in every cipher mode: the rotation fails with the typed error
// and leaves the Shuffler as it was (never part-way, never
// ErrCounterExhausted), every entry keeps its value, and the next RotateKey
// succeeds. In CTR mode a rotation needs no memory at all, and in the
// authenticated modes only plain memory, which takes no lock.
func TestFaultsRotateKey(t *testing.T) {
	cases := []struct {
		op   osmem.Op
		mode LockMode
		want error
	}{
		{osmem.OpMap, LockBestEffort, ErrOutOfMemory},
		{osmem.OpLock, LockStrict, ErrLockFailed},
	}
	for _, c := range allCiphers {
		for _, fc := range cases {
			t.Run(c.String()+"/"+fc.op.String(), func(t *testing.T) {
				for n := int64(0); ; n++ {
					s, m := rotateWorkload(t, c, fc.mode)
					// A refusal with arenas idle gives them back and tries
					// again: the refusal tested here is one nothing relieves.
					s.aux.DropIdle(nil)
					calls := failNth(t, fc.op, n)
					err := s.RotateKey(nil, nil)
					total := calls.Load()
					osmem.SetFault(nil)
					if n < total {
						if !errors.Is(err, fc.want) || errors.Is(err, ErrRotationIncomplete) {
							t.Fatalf("call %d of %v failed: RotateKey returned %v, want %v", n, fc.op, err, fc.want)
						}
						if got := s.Stats().KeyRotations; got != 0 {
							t.Fatalf("a failed rotation counted: %d", got)
						}
					} else if err != nil {
						t.Fatal(err)
					}
					mustCheck(t, s)
					verifyModel(t, s, m)
					if err := s.RotateKey(nil, nil); err != nil {
						t.Fatalf("RotateKey after a failed one (call %d of %v): %v", n, fc.op, err)
					}
					verifyModel(t, s, m)
					mustCheck(t, s)
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					if n >= total {
						t.Logf("%v: failed each of %d calls in turn", fc.op, total)
						if total == 0 && c != AES256CTR && fc.op == osmem.OpMap {
							t.Fatalf("rotation made no %v call", fc.op)
						}
						break
					}
				}
			})
		}
	}
}

// TestRotateKeyIncomplete stops a rotation part-way: between its phases a
// large entry appears in the last shard, and the memory its backup buffer
// needs is refused. RotateKey reports ErrRotationIncomplete wrapping
// ErrOutOfMemory, every entry stays readable, and the next RotateKey
// finishes that rotation and does its own.
func TestRotateKeyIncomplete(t *testing.T) {
	for _, c := range []Cipher{AES256GCM, ChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			s, err := New(WithShards(2), WithArenaSize(4096), WithCipher(c))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			m := model{}
			for i := range 20 {
				h, err := CopyFrom(s, []byte{byte(i), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
				if err != nil {
					t.Fatal(err)
				}
				m[h] = []byte{byte(i), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
			}
			beforeRotationSwitch = func() {
				for {
					h, err := Alloc[byte](s, 100000)
					if err != nil {
						t.Error(err)
						return
					}
					if h.shard() == 1 {
						m[h] = make([]byte, 100000)
						break
					}
					s.Free(h)
				}
				failNth(t, osmem.OpMap, 0)
			}
			t.Cleanup(func() { beforeRotationSwitch = nil })
			err = s.RotateKey(nil, nil)
			beforeRotationSwitch = nil
			osmem.SetFault(nil)
			if !errors.Is(err, ErrRotationIncomplete) || !errors.Is(err, ErrOutOfMemory) {
				t.Fatalf("got %v, want ErrRotationIncomplete wrapping ErrOutOfMemory", err)
			}
			if s.shards[0].rot.prev != nil || s.shards[1].rot.prev == nil {
				t.Fatal("not stopped in shard 1 with shard 0 finished: the case was not made")
			}
			mustCheck(t, s)
			verifyModel(t, s, m)
			if err := s.RotateKey(nil, nil); err != nil {
				t.Fatalf("RotateKey after an incomplete one: %v", err)
			}
			if got := s.Stats().KeyRotations; got != 2 {
				t.Fatalf("KeyRotations %d, want 2 (the finished one and the new one)", got)
			}
			verifyModel(t, s, m)
			mustCheck(t, s)
		})
	}
}
