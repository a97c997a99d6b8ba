package memshuffle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"math"
	"testing"
)

// lyingHash is a hash.Hash whose Size and BlockSize say what a broken hash
// function would; its sums are SHA-256's.
type lyingHash struct {
	hash.Hash
	size, blockSize int
}

func (h lyingHash) Size() int      { return h.size }
func (h lyingHash) BlockSize() int { return h.blockSize }

// optionWrapper is an Option of the caller's that embeds one of ours: it
// has the method set of Option whether or not the embedded one is nil.
type optionWrapper struct{ Option }

// TestBadArgs calls exported functions with argument values a careful
// caller would expect refused: a key of zeros (a buffer never filled),
// an empty name, a hash function whose sizes are impossible, an Option
// with nothing in it. Each must answer its sentinel without panicking,
// and leave the Shuffler's entries, their count and its invariants as
// they were. The bad Shuffler and Handle states are
// TestEveryCallRefusesBadState's.
func TestBadArgs(t *testing.T) {
	s := newTest(t)
	secret := bytes.Repeat([]byte{0x5a}, 32)
	live, err := CopyFrom(s, bytes.Clone(secret))
	if err != nil {
		t.Fatal(err)
	}
	key, err := Random(s, 32)
	if err != nil {
		t.Fatal(err)
	}
	unfilled, err := Alloc[byte](s, 32) // a key its caller forgot to fill
	if err != nil {
		t.Fatal(err)
	}
	zeroAEAD, err := NewAEAD(s, unfilled)
	if err != nil {
		t.Fatal(err)
	}
	zeroSeed := pkcs8(t, ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	zeroEd, err := CopyFrom(s, bytes.Clone(zeroSeed))
	if err != nil {
		t.Fatal(err)
	}
	zeroSeedPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: zeroSeed})
	lying := func(size, blockSize int) func() hash.Hash {
		return func() hash.Hash { return lyingHash{sha256.New(), size, blockSize} }
	}
	// sha256.New, then sha256.New224, and so on: two hashes of one block
	// size but of different sizes.
	var calls int
	alternating := func() hash.Hash {
		calls++
		if calls%2 == 0 {
			return sha256.New224()
		}
		return sha256.New()
	}
	// wiped checks RotateKey's promise to wipe the caller's arrays, which
	// holds when it refuses them too.
	rotate := func(key *[32]byte, salt *[8]byte) error {
		err := s.RotateKey(key, salt)
		if (key != nil && *key != [32]byte{}) || (salt != nil && *salt != [8]byte{}) {
			return fmt.Errorf("the caller's key or salt not wiped (%w)", err)
		}
		return err
	}
	nonce := make([]byte, aeadNonceSize)
	sealed, err := func() ([]byte, error) {
		a, err := NewAEAD(s, key)
		if err != nil {
			return nil, err
		}
		return a.Seal(nil, nonce, []byte("message"), nil)
	}()
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		want error
		call func() error
	}{
		{`PublishExpvar("")`, ErrNilArgument, func() error { return s.PublishExpvar("") }},

		{"RotateKey, key of zeros", ErrInvalidKey, func() error { return rotate(new([32]byte), &[8]byte{1, 2}) }},
		{"RotateKey, key of zeros, nil salt", ErrInvalidKey, func() error { return rotate(new([32]byte), nil) }},
		{"RotateKey, salt inside the key", ErrBufferOverlap, func() error {
			buf := bytes.Repeat([]byte{9}, 40)
			return rotate((*[32]byte)(buf[:32]), (*[8]byte)(buf[24:32]))
		}},
		{"RotateKey, salt over the key's last byte, on the stack", ErrBufferOverlap, func() error {
			var buf [40]byte
			for i := range buf {
				buf[i] = byte(i + 1)
			}
			return rotate((*[32]byte)(buf[:32]), (*[8]byte)(buf[31:39]))
		}},
		{"RotateKey, salt right after the key", nil, func() error {
			var buf [40]byte
			for i := range buf {
				buf[i] = byte(i + 1)
			}
			return rotate((*[32]byte)(buf[:32]), (*[8]byte)(buf[32:40]))
		}},

		{"MAC, key of zeros", ErrInvalidKey, func() error {
			_, err := MAC(s, unfilled, sha256.New, []byte("m"), nil)
			return err
		}},
		{"MAC, hash of size -1", ErrInvalidSize, func() error {
			_, err := MAC(s, key, lying(-1, 64), []byte("m"), nil)
			return err
		}},
		{"MAC, hash of size 0", ErrInvalidSize, func() error {
			_, err := MAC(s, key, lying(0, 64), []byte("m"), nil)
			return err
		}},
		{"MAC, block size math.MaxInt", ErrInvalidSize, func() error {
			_, err := MAC(s, key, lying(32, math.MaxInt), []byte("m"), nil)
			return err
		}},
		{"MAC, hashes of two sizes", ErrInvalidSize, func() error {
			_, err := MAC(s, key, alternating, []byte("m"), nil)
			return err
		}},
		{"MAC, hash function panics", ErrPanicked, func() error {
			_, err := MAC(s, key, func() hash.Hash { panic("no hash") }, []byte("m"), nil)
			return err
		}},
		{"MAC, typed nil hash", ErrNilArgument, func() error {
			_, err := MAC(s, key, func() hash.Hash { return (*nilHash)(nil) }, []byte("m"), nil)
			return err
		}},

		{"AEAD.Seal, key of zeros", ErrInvalidKey, func() error {
			_, err := zeroAEAD.Seal(nil, nonce, []byte("message"), nil)
			return err
		}},
		{"AEAD.Open, key of zeros", ErrInvalidKey, func() error {
			_, err := zeroAEAD.Open(nil, nonce, sealed, nil)
			return err
		}},

		// crypto/cipher panics on these.
		{"AEAD.Seal, additional data in dst's spare capacity", ErrBufferOverlap, func() error {
			a, err := NewAEAD(s, key)
			if err != nil {
				return err
			}
			buf := make([]byte, 0, 64)
			_, err = a.Seal(buf, nonce, []byte("message"), buf[:64][8:16])
			return err
		}},
		{"AEAD.Open, additional data in dst's spare capacity", ErrBufferOverlap, func() error {
			a, err := NewAEAD(s, key)
			if err != nil {
				return err
			}
			buf := make([]byte, 0, 64)
			_, err = a.Open(buf, nonce, sealed, buf[:64][:1])
			return err
		}},

		{"NewSigner, Ed25519 seed of zeros", ErrInvalidKey, func() error {
			_, err := NewSigner(s, zeroEd)
			return err
		}},
		{"ReadPrivateKey, Ed25519 seed of zeros", ErrInvalidKey, func() error {
			_, err := ReadPrivateKey(s, bytes.NewReader(zeroSeedPEM))
			return err
		}},

		{"New, WithLogger(&slog.Logger{})", ErrInvalidOption, func() error {
			n, err := New(WithLogger(&slog.Logger{}))
			if err == nil {
				n.Close()
			}
			return err
		}},
		{"New, an Option wrapping a nil Option", ErrInvalidOption, func() error {
			n, err := New(optionWrapper{})
			if err == nil {
				n.Close()
			}
			return err
		}},
	} {
		entries := s.Stats().Entries
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panic: %v", p)
				}
			}()
			err = tc.call()
		}()
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		mustCheck(t, s)
		if n := s.Stats().Entries; n != entries {
			t.Errorf("%s: %d entries, had %d", tc.name, n, entries)
		}
		if ok, err := Equal(s, live, secret); !ok || err != nil {
			t.Fatalf("%s: an entry changed: %v, %v", tc.name, ok, err)
		}
	}
	// The refused keys are still the caller's, as they were.
	for _, h := range []Handle{unfilled, zeroEd} {
		if !s.Valid(h) {
			t.Errorf("%v freed by a refusal", h)
		}
	}
}

// nilHash is a hash.Hash whose nil pointer a hash function may return.
type nilHash struct{ hash.Hash }
