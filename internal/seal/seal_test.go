package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/memshuffle/memshuffle/internal/ctr"
	"github.com/memshuffle/memshuffle/internal/secretmode"
)

// TestKnownAnswers checks each mode against the standard library or
// x/crypto used directly, on a fixed key, salt, counter value and handle:
// the nonce is salt[:4] || big-endian counter, the associated data the
// handle.
func TestKnownAnswers(t *testing.T) {
	var key [32]byte
	for i := range key {
		key[i] = byte(i)
	}
	salt := [8]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}
	const c = 0x0102030405060708
	plain := []byte("known-answer plaintext, 41 bytes long....")
	var scr Scratch
	copy(scr.AD[:], "handle-16-bytes!")
	nonce := make([]byte, 12)
	copy(nonce, salt[:4])
	binary.BigEndian.PutUint64(nonce[4:], c)

	blk, _ := aes.NewCipher(key[:])
	gcm, _ := cipher.NewGCM(blk)
	chacha, _ := chacha20poly1305.New(key[:])
	for _, tc := range []struct {
		mode Mode
		want []byte
	}{
		{AES256GCM, gcm.Seal(nil, nonce, plain, scr.AD[:])},
		{ChaCha20Poly1305, chacha.Seal(nil, nonce, plain, scr.AD[:])},
	} {
		ci, err := New(tc.mode, &key, &salt, new([ctr.StateSize]byte))
		if err != nil {
			t.Fatal(err)
		}
		if ci.Overhead() != 16 || ci.Counters(1<<20) != 1 || ci.OffHeap() {
			t.Fatalf("%v: overhead %d counters %d", tc.mode, ci.Overhead(), ci.Counters(1<<20))
		}
		buf := make([]byte, len(plain)+16)
		copy(buf, plain)
		ci.Seal(buf, buf[:len(plain)], c, &scr)
		if !bytes.Equal(buf, tc.want) {
			t.Fatalf("%v: sealed %s, want %s", tc.mode, hex.EncodeToString(buf), hex.EncodeToString(tc.want))
		}
		out := make([]byte, len(plain))
		if err := ci.Open(out, buf, c, &scr); err != nil || !bytes.Equal(out, plain) {
			t.Fatalf("%v: open: %v", tc.mode, err)
		}
		// Wrong counter value, wrong handle, flipped tag: all refused.
		if err := ci.Open(out, buf, c+1, &scr); !errors.Is(err, ErrAuth) {
			t.Fatalf("%v: wrong nonce accepted", tc.mode)
		}
		other := scr
		other.AD[0] ^= 1
		if err := ci.Open(out, buf, c, &other); !errors.Is(err, ErrAuth) {
			t.Fatalf("%v: wrong handle accepted", tc.mode)
		}
		buf[len(buf)-1] ^= 1
		if err := ci.Open(out, buf, c, &scr); !errors.Is(err, ErrAuth) {
			t.Fatalf("%v: flipped tag accepted", tc.mode)
		}
	}
	// CTR matches internal/ctr and has no overhead.
	ci, _ := New(AES256CTR, &key, &salt, new([ctr.StateSize]byte))
	if ci.Overhead() != 0 || ci.Counters(33) != 3 {
		t.Fatal("CTR accounting")
	}
	if _, ok := CTR(ci); !ok {
		t.Fatal("CTR() does not see the CTR cipher")
	}
	if _, err := New(Mode(9), &key, &salt, nil); err == nil {
		t.Fatal("unknown mode accepted")
	}
}

func TestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	var key [32]byte
	var salt [8]byte
	for _, m := range []Mode{AES256CTR, AES256GCM, ChaCha20Poly1305} {
		ci, _ := New(m, &key, &salt, new([ctr.StateSize]byte))
		buf := make([]byte, 32+ci.Overhead())
		var scr Scratch
		n := testing.AllocsPerRun(100, func() {
			ci.Seal(buf, buf[:32], 7, &scr)
			ci.Open(buf[:32], buf, 7, &scr)
		})
		if n != 0 {
			t.Errorf("%v: %v allocations per seal and open", m, n)
		}
	}
}

// secretAEAD is a cipher.AEAD that records whether its Seal and Open ran
// inside secret.Do.
type secretAEAD struct{ inside *[2]bool }

func (secretAEAD) NonceSize() int { return 12 }
func (secretAEAD) Overhead() int  { return 16 }

func (a secretAEAD) Seal(dst, _, plain, _ []byte) []byte {
	a.inside[0] = secretmode.Active()
	return append(dst, make([]byte, len(plain)+16)...)
}

func (a secretAEAD) Open(dst, _, sealed, _ []byte) ([]byte, error) {
	a.inside[1] = secretmode.Active()
	return append(dst, make([]byte, len(sealed)-16)...), nil
}

// TestAEADCallsInSecretMode: in secret mode the AEAD modes' Seal and Open
// run the AEAD inside secret.Do, where the runtime does not preempt it
// asynchronously and so never saves the registers holding its key; in
// other builds, plainly.
func TestAEADCallsInSecretMode(t *testing.T) {
	var inside [2]bool
	x := aeadCipher{a: secretAEAD{&inside}}
	var scr Scratch
	buf := make([]byte, 32+16)
	x.Seal(buf, buf[:32], 1, &scr)
	if err := x.Open(buf[:32], buf, 1, &scr); err != nil {
		t.Fatal(err)
	}
	if inside != [2]bool{secretmode.On, secretmode.On} {
		t.Errorf("Seal, Open inside secret.Do: %v, want both %v", inside, secretmode.On)
	}
}
