package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"
	"unsafe"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/memshuffle/memshuffle/internal/ctr"
	"github.com/memshuffle/memshuffle/internal/pintest"
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
		if m == ChaCha20Poly1305 && pureGo {
			t.Logf("%v: not checked under the purego tag (x/crypto's generic code allocates)", m)
			continue
		}
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

// pinProbeAEAD is a cipher.AEAD whose Seal and Open run a pintest probe's
// spin: whether the runtime could stop them.
type pinProbeAEAD struct{ spin func() }

func (pinProbeAEAD) NonceSize() int { return 12 }
func (pinProbeAEAD) Overhead() int  { return 16 }

func (a pinProbeAEAD) Seal(dst, _, plain, _ []byte) []byte {
	a.spin()
	return append(dst, make([]byte, len(plain)+16)...)
}

func (a pinProbeAEAD) Open(dst, _, sealed, _ []byte) ([]byte, error) {
	a.spin()
	return append(dst, make([]byte, len(sealed)-16)...), nil
}

// TestAEADCallsPinned: in the default build the AEAD modes' Seal and Open
// run the AEAD pinned, where the runtime cannot stop it, for inputs of up
// to PinMax bytes; longer ones, and every call with the pinning turned off
// (the control), it can. Secret mode keeps the preemptions out with
// secret.Do instead (TestAEADCallsInSecretMode), whose calls the runtime
// can still stop at a prologue: the test is for the default build.
func TestAEADCallsPinned(t *testing.T) {
	pintest.Require(t, Pins(0))
	for _, c := range []struct {
		n    int
		pin  bool // pinning on
		want bool // preemptible
	}{{32, true, false}, {PinMax, true, false}, {PinMax + 1, true, true}, {32, false, true}} {
		for _, op := range []string{"Seal", "Open"} {
			was := SetPinningForTest(c.pin)
			var err error
			preemptible := pintest.Preemptible(t, !c.want, func(spin func()) {
				x := aeadCipher{a: pinProbeAEAD{spin}}
				var scr Scratch
				buf := make([]byte, c.n+16)
				if op == "Seal" {
					x.Seal(buf, buf[:c.n], 1, &scr)
				} else {
					err = x.Open(buf[:c.n], buf, 1, &scr)
				}
			})
			SetPinningForTest(was)
			if err != nil {
				t.Fatal(err)
			}
			if preemptible != c.want {
				t.Errorf("%s of %d bytes, pinning on %v: preemptible %v, want %v", op, c.n, c.pin, preemptible, c.want)
			}
		}
	}
}

// TestAEADRefusesBeforePinning: what would make the AEAD panic, a wiped
// GCM's nonce size of 0 (a wiped ChaCha20-Poly1305 has a fixed one, and
// seals under a zero key) or an output overlapping the input without
// starting at it, panics before the pin, where the panic can be recovered,
// not inside it, where the runtime would end the process.
func TestAEADRefusesBeforePinning(t *testing.T) {
	var key [32]byte
	var salt [8]byte
	for _, c := range []struct {
		name  string
		modes []Mode
		run   func(x Cipher)
	}{
		{"wiped", []Mode{AES256GCM}, func(x Cipher) {
			x.Wipe()
			buf := make([]byte, 48)
			x.Seal(buf, buf[:32], 1, new(Scratch))
		}},
		{"overlap", []Mode{AES256GCM, ChaCha20Poly1305}, func(x Cipher) {
			buf := make([]byte, 64)
			x.Seal(buf[1:49], buf[:32], 1, new(Scratch))
		}},
		{"overlap/ad", []Mode{AES256GCM, ChaCha20Poly1305}, func(x Cipher) {
			scr := new(Scratch)
			mem := unsafe.Slice((*byte)(unsafe.Pointer(scr)), unsafe.Sizeof(*scr))
			ad := unsafe.Offsetof(scr.AD)
			x.Seal(mem[ad-40:ad+8], mem[ad-40:ad-8], 1, scr)
		}},
		{"overlap/open", []Mode{AES256GCM, ChaCha20Poly1305}, func(x Cipher) {
			buf := make([]byte, 64)
			_ = x.Open(buf[1:33], buf[:48], 1, new(Scratch))
		}},
	} {
		for _, m := range c.modes {
			if c.name == "wiped" && !CryptoInGo {
				continue // a wiped BoringCrypto AEAD faults in C
			}
			x, err := New(m, &key, &salt, new([ctr.StateSize]byte))
			if err != nil {
				t.Fatal(err)
			}
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%v, %s: no panic", m, c.name)
					}
				}()
				c.run(x)
			}()
		}
	}
}

// TestNewPinned: in the default build New builds the key pinned, where the
// runtime cannot stop it; with the pinning off it can (the control).
func TestNewPinned(t *testing.T) {
	pintest.Require(t, Pins(0))
	defer func() { buildHookForTest = nil }()
	var key [32]byte
	var salt [8]byte
	for _, m := range []Mode{AES256CTR, AES256GCM, ChaCha20Poly1305} {
		for _, pin := range []bool{true, false} {
			var err error
			was := SetPinningForTest(pin)
			preemptible := pintest.Preemptible(t, pin, func(spin func()) {
				buildHookForTest = spin
				var c Cipher
				if c, err = New(m, &key, &salt, new([ctr.StateSize]byte)); err == nil {
					c.Wipe()
				}
			})
			SetPinningForTest(was)
			if err != nil {
				t.Fatal(err)
			}
			if preemptible == pin {
				t.Errorf("%v, pinning on %v: preemptible %v", m, pin, preemptible)
			}
		}
	}
}
