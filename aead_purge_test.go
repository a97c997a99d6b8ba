package memshuffle

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"testing"
	"time"
)

// TestAEADWipesOutputWhenBorrowFails: when the key's borrow fails to end
// after the cipher wrote its output (here a Purge in between), the call
// reports the error and leaves no output in dst's spare capacity, where a
// caller that sees the error would never look for a plaintext to wipe.
func TestAEADWipesOutputWhenBorrowFails(t *testing.T) {
	s := newTest(t)
	key, err := CopyFrom(s, bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAEAD(s, key)
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]byte, 0, 64)
	marker := bytes.Repeat([]byte{0xA5}, 16)
	_, err = a.do(dst, make([]byte, aeadNonceSize), nil, len(marker), func(_ cipher.AEAD, out []byte) ([]byte, error) {
		out = append(out, marker...)
		if err := s.Purge(); err != nil {
			t.Fatal(err)
		}
		return out, nil
	})
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("the borrow ended with %v after a Purge, want ErrClosed", err)
	}
	if got := dst[:len(marker)]; !bytes.Equal(got, make([]byte, len(marker))) {
		t.Fatalf("dst's spare capacity holds %x after the failed call", got)
	}
}

// TestAEADRefusalKeepsMessageInPlace: a Seal or Open in place (dst the
// message's own storage, with room for the result) refused before it
// began (the key rented, freed, expired, zeros, the Shuffler purged or
// closed) returns its error and leaves the caller's message as it was.
// Such a call used to zero the message: the wipe meant for a half-done
// output covered the spare capacity whether or not anything was written.
func TestAEADRefusalKeepsMessageInPlace(t *testing.T) {
	clk := newTestClock(time.Now())
	for _, tc := range []struct {
		name string
		key  []byte
		opts []Option
		// refuse makes the next call fail before it reads the key.
		refuse func(t *testing.T, s *Shuffler, key Handle)
		want   error
	}{
		{"key rented", nil, nil, func(t *testing.T, s *Shuffler, key Handle) {
			if _, err := RentSlice[byte](s, key); err != nil {
				t.Fatal(err)
			}
		}, ErrBusy},
		{"key freed", nil, nil, func(t *testing.T, s *Shuffler, key Handle) { s.Free(key) }, ErrInvalidHandle},
		// The test's clock, not the system's: a CopyFrom that outlasted a
		// TTL of a millisecond on a loaded machine made a key already
		// expired.
		{"key expired", nil, []Option{WithDefaultTTL(time.Second), withClock(clk)}, func(t *testing.T, s *Shuffler, key Handle) {
			clk.advance(2 * time.Second)
		}, ErrExpired},
		{"key of zeros", make([]byte, 32), nil, func(*testing.T, *Shuffler, Handle) {}, ErrInvalidKey},
		{"purged", nil, nil, func(t *testing.T, s *Shuffler, key Handle) { s.Purge() }, ErrClosed},
		{"closed", nil, nil, func(t *testing.T, s *Shuffler, key Handle) { s.Close() }, ErrClosed},
	} {
		for _, op := range []string{"Seal", "Open"} {
			t.Run(tc.name+"/"+op, func(t *testing.T) {
				s := newTest(t, tc.opts...)
				raw := bytes.Repeat([]byte{7}, 32)
				if tc.key != nil {
					raw = tc.key
				}
				key, err := CopyFrom(s, bytes.Clone(raw))
				if err != nil {
					t.Fatal(err)
				}
				a := &AEAD{s: s, key: key} // NewAEAD refuses a key of zeros
				nonce := make([]byte, aeadNonceSize)
				msg := []byte("attack at dawn, from the north")
				if op == "Open" {
					block, _ := aes.NewCipher(raw)
					g, _ := cipher.NewGCM(block)
					msg = g.Seal(nil, nonce, msg, nil)
				}
				buf := append(bytes.Clone(msg), make([]byte, aeadTagSize)...)[:len(msg)]
				tc.refuse(t, s, key)
				var got []byte
				if op == "Seal" {
					got, err = a.Seal(buf[:0], nonce, buf, nil)
				} else {
					got, err = a.Open(buf[:0], nonce, buf, nil)
				}
				if !errors.Is(err, tc.want) {
					t.Fatalf("%s: %v, want %v", op, err, tc.want)
				}
				if len(got) != 0 || !bytes.Equal(buf, msg) {
					t.Fatalf("%s refused: returned %d bytes, message in place now %x, was %x", op, len(got), buf, msg)
				}
			})
		}
	}
}
