package memshuffle

import (
	"bytes"
	"errors"
	"testing"
)

// TestStaleSliceWrite writes through a slice kept after Return, which the
// docs forbid, to show what each cipher makes of it: with the default CTR
// cipher the entry silently decrypts to changed bytes; the authenticated
// modes report ErrTampered on the next Rent and hand out no plaintext.
func TestStaleSliceWrite(t *testing.T) {
	for _, c := range allCiphers {
		t.Run(c.String(), func(t *testing.T) {
			s := newTest(t, WithShards(1), WithCipher(c))
			want := []byte("the value stored in the entry...")
			h, err := CopyFrom(s, bytes.Clone(want))
			if err != nil {
				t.Fatal(err)
			}
			stale, err := RentSlice[byte](s, h)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Return(h); err != nil {
				t.Fatal(err)
			}
			stale[3] ^= 0x20 // the misuse: the entry is ciphertext again
			got, err := RentSlice[byte](s, h)
			if c == AES256CTR {
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Equal(got, want) || got[3] != want[3]^0x20 {
					t.Fatalf("got %q: the stale write should have flipped one bit, undetected", got)
				}
				s.Return(h)
				return
			}
			if !errors.Is(err, ErrTampered) || got != nil {
				t.Fatalf("got %q, %v; want ErrTampered and no plaintext", got, err)
			}
			if s.Stats().Tampered == 0 {
				t.Fatal("tampering not counted")
			}
		})
	}
}

// TestStaleHandleAfterSlotReuse: a Handle whose entry was freed must
// stay invalid once its slot holds a new entry (the generation check of
// lookup), or the holder of the stale Handle reads, writes and frees
// another owner's secret. The stale-Handle tests before used the Handle
// before its slot was reused.
func TestStaleHandleAfterSlotReuse(t *testing.T) {
	s := newTest(t, WithShards(1))
	old, err := CopyFrom(s, []byte("old secret"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Free(old); err != nil {
		t.Fatal(err)
	}
	h, err := CopyFrom(s, []byte("new secret"))
	if err != nil {
		t.Fatal(err)
	}
	if h.slot() != old.slot() || h.shard() != old.shard() {
		t.Fatalf("slot not reused: %v then %v", old, h)
	}
	if s.Valid(old) {
		t.Error("stale Handle is Valid after its slot was reused")
	}
	if b, err := RentSlice[byte](s, old); !errors.Is(err, ErrInvalidHandle) {
		t.Errorf("Rent of a stale Handle after slot reuse: %q, %v; want ErrInvalidHandle", b, err)
		if err == nil {
			s.Return(old)
		}
	}
	if err := s.Free(old); !errors.Is(err, ErrInvalidHandle) {
		t.Errorf("Free of a stale Handle after slot reuse: %v; want ErrInvalidHandle", err)
	}
	b, err := RentSlice[byte](s, h)
	if err != nil {
		t.Fatalf("new entry: %v", err)
	}
	if string(b) != "new secret" {
		t.Errorf("new entry holds %q", b)
	}
	s.Return(h)
}
