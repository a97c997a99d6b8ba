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
