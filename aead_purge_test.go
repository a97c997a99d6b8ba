package memshuffle

import (
	"bytes"
	"crypto/cipher"
	"errors"
	"testing"
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
