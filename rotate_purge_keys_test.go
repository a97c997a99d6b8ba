package memshuffle

import (
	"bytes"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/memshuffle/memshuffle/internal/ctr"
	"github.com/memshuffle/memshuffle/internal/seal"
)

// TestPurgeWipesRotationOldKey: Purge, once a rotation's batches have
// moved every shard off the old key and before the rotation wipes it,
// wipes the old cipher too. No shard held it then, and with an
// authenticated cipher its key schedule, on the Go heap, outlived Purge
// until the rotating goroutine ran again. The rotation then reports
// ErrClosed, not a completed rotation. Close does the same.
func TestPurgeWipesRotationOldKey(t *testing.T) {
	for _, c := range []Cipher{AES256GCM, ChaCha20Poly1305} {
		for _, end := range rotationEnds {
			t.Run(c.String()+"/"+end.name, func(t *testing.T) {
				s := newTest(t, WithShards(2), WithCipher(c))
				for range 8 {
					if _, err := CopyFrom(s, []byte("0123456789abcdef")); err != nil {
						t.Fatal(err)
					}
				}
				purged, wiped := false, false
				afterRotationHold = func() {
					prev := s.rotator.left.prev
					if purged || prev == nil || !s.rotator.left.switched || !noShardHolds(s) {
						return
					}
					purged = true
					mem := aeadMem(t, prev)
					if err := end.f(s); err != nil {
						t.Error(err)
					}
					wiped = allZeroParts(mem)
				}
				defer func() { afterRotationHold = nil }()
				err := s.RotateKey(nil, nil)
				afterRotationHold = nil
				if !purged {
					t.Fatal("no hold ended with every shard off the old key")
				}
				if !wiped {
					t.Errorf("the old %v cipher is not wiped when %s returns", c, end.name)
				}
				if !errors.Is(err, ErrClosed) {
					t.Errorf("RotateKey across %s: %v, want ErrClosed", end.name, err)
				}
				if n := s.tally.rotations.Load(); n != 0 {
					t.Errorf("%d rotations counted after one across %s, want 0", n, end.name)
				}
			})
		}
	}
}

// rotationEnds are the two calls that end a Shuffler under a rotation.
var rotationEnds = []struct {
	name string
	f    func(*Shuffler) error
}{
	{"Purge", (*Shuffler).Purge},
	{"Close", (*Shuffler).Close},
}

// aeadMem returns the memory behind authenticated cipher c's cipher.AEAD
// that holds its key schedule: the object, and on s390x what it refers to
// (ctr.Reach), all zeros once Wipe has run.
func aeadMem(t *testing.T, c seal.Cipher) [][]byte {
	t.Helper()
	v := reflect.ValueOf(c)
	for v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	a := v.FieldByName("a")
	if !a.IsValid() || a.Kind() != reflect.Interface || a.Elem().Kind() != reflect.Pointer {
		t.Fatalf("%T has no AEAD field", c)
	}
	// The field is unexported: the same pointer, made anew, is not.
	p := a.Elem()
	mem := ctr.Reach(reflect.NewAt(p.Type().Elem(), p.UnsafePointer()).Interface())
	if len(mem) == 0 || allZeroParts(mem) {
		t.Fatalf("%T's AEAD holds nothing: not where its key is", c)
	}
	return mem
}

// allZeroParts reports whether every part of mem is zeros.
func allZeroParts(mem [][]byte) bool {
	for _, m := range mem {
		if !allZero(m) {
			return false
		}
	}
	return true
}

// noShardHolds reports whether no shard of s still holds a rotation's old
// cipher.
func noShardHolds(s *Shuffler) bool {
	s.lockAll()
	defer s.unlockAll()
	for i := range s.shards {
		if s.shards[i].rot.prev != nil {
			return false
		}
	}
	return true
}

// TestPurgeWipesRotationNewKey: Purge or Close before a rotation's switch
// wipes the new cipher, which no shard holds yet, and the rotation counts
// as none.
func TestPurgeWipesRotationNewKey(t *testing.T) {
	for _, end := range rotationEnds {
		t.Run(end.name, func(t *testing.T) {
			s := newTest(t, WithShards(2), WithCipher(AES256GCM))
			if _, err := CopyFrom(s, []byte("0123456789abcdef")); err != nil {
				t.Fatal(err)
			}
			wiped := false
			beforeRotationSwitch = func() {
				next := s.rotator.left.next
				mem := aeadMem(t, next)
				if err := end.f(s); err != nil {
					t.Error(err)
				}
				wiped = allZeroParts(mem)
			}
			defer func() { beforeRotationSwitch = nil }()
			if err := s.RotateKey(nil, nil); !errors.Is(err, ErrClosed) {
				t.Errorf("RotateKey across %s: %v, want ErrClosed", end.name, err)
			}
			if !wiped {
				t.Errorf("the new cipher is not wiped when %s returns", end.name)
			}
			if n := s.tally.rotations.Load(); n != 0 {
				t.Errorf("%d rotations counted after one across %s, want 0", n, end.name)
			}
		})
	}
}

// TestPurgeDuringRotationLeavesNoRawKey: the key and salt given to
// RotateKey are wiped once the rotation has copied them, so a Purge while
// the rotation runs finds nothing of them left, wherever they were: in the
// caller's heap arrays, or in the inbox slots a caller's stack arrays move
// to. They were wiped only when the rotation returned, after its next
// look at the closed Shuffler.
func TestPurgeDuringRotationLeavesNoRawKey(t *testing.T) {
	for _, where := range []string{"heap", "stack"} {
		t.Run(where, func(t *testing.T) {
			s := newTest(t, WithShards(2))
			if _, err := CopyFrom(s, []byte("0123456789abcdef")); err != nil {
				t.Fatal(err)
			}
			var key [32]byte
			var salt [8]byte
			for i := range key {
				key[i] = byte(0xa0 + i)
			}
			for i := range salt {
				salt[i] = byte(0x51 + i)
			}
			heapKey, heapSalt := new([32]byte), new([8]byte)
			*heapKey, *heapSalt = key, salt
			ran := false
			beforeRotationSwitch = func() {
				ran = true
				if err := s.Purge(); err != nil {
					t.Error(err)
				}
				if where == "heap" && (*heapKey != [32]byte{} || *heapSalt != [8]byte{}) {
					t.Error("the caller's key or salt outlives Purge during the rotation")
				}
				ib := (*inboxMem)(atomic.LoadPointer(&inbox))
				for i := range len(ib.busy) {
					slot := ib.slot(i)
					if bytes.Contains(slot, key[:8]) || bytes.Contains(slot, salt[:]) {
						t.Errorf("inbox slot %d holds the key or salt after Purge during the rotation", i)
					}
				}
			}
			defer func() { beforeRotationSwitch = nil }()
			var err error
			if where == "heap" {
				err = s.RotateKey(heapKey, heapSalt)
			} else {
				k, sa := key, salt // arrays of this frame: RotateKey moves them to the inbox
				err = s.RotateKey(&k, &sa)
			}
			if !errors.Is(err, ErrClosed) {
				t.Errorf("RotateKey across Purge: %v, want ErrClosed", err)
			}
			if !ran {
				t.Fatal("the rotation never reached its switch")
			}
		})
	}
}
