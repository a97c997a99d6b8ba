package memshuffle

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"hash/fnv"
	"reflect"
	"sync"
	"testing"

	"github.com/memshuffle/memshuffle/internal/pintest"
	"github.com/memshuffle/memshuffle/internal/seal"
)

// TestBorrowKeyPins: with pin set, in the default build, the runtime
// cannot stop the adapters' computation with the key; without it (the
// control, and MAC's and the signers' calls, which run code that may
// park), it can. Secret mode keeps asynchronous preemptions out with
// secret.Do instead, and does not pin.
func TestBorrowKeyPins(t *testing.T) {
	pintest.Require(t, seal.Pins(0))
	s := newTest(t)
	h, err := Random(s, 32)
	if err != nil {
		t.Fatal(err)
	}
	for _, pin := range []bool{false, true, false} {
		var err error
		preemptible := pintest.Preemptible(t, pin, func(spin func()) {
			err = borrowKey(s, h, pinRule{safe: pin}, func([]byte) error {
				spin()
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if preemptible == pin {
			t.Errorf("pin %v: preemptible %v", pin, preemptible)
		}
	}
}

// TestPinRules: which adapter calls borrowKey pins. MAC only with the
// standard library's SHA-2 hashes, whose code neither parks nor panics,
// and each only while the key and the rest of the input are at most
// seal.PinMax bytes; the signers never; secret mode never, as secret.Do
// keeps preemptions out by itself.
func TestPinRules(t *testing.T) {
	custom := func() hash.Hash { return fnv.New64a() }
	for _, c := range []struct {
		name string
		rule pinRule
		key  int
		want bool
	}{
		{"MAC/sha256", macPin(sha256.New(), sha256.New(), make([]byte, 64)), 32, true},
		{"MAC/sha224", macPin(sha256.New224(), sha256.New224(), nil), 32, true},
		{"MAC/sha512", macPin(sha512.New(), sha512.New(), nil), 64, true},
		{"MAC/sha384", macPin(sha512.New384(), sha512.New384(), nil), 64, true},
		{"MAC/custom", macPin(custom(), custom(), nil), 32, false},
		{"MAC/mixed", macPin(sha256.New(), custom(), nil), 32, false},
		{"MAC/at-most", macPin(sha256.New(), sha256.New(), make([]byte, seal.PinMax-32)), 32, true},
		{"MAC/over", macPin(sha256.New(), sha256.New(), make([]byte, seal.PinMax-31)), 32, false},
		{"MAC/long-key", macPin(sha256.New(), sha256.New(), nil), seal.PinMax + 1, false},
		{"AEAD/at-most", pinRule{safe: true, extra: seal.PinMax - 32}, 32, true},
		{"AEAD/over", pinRule{safe: true, extra: seal.PinMax}, 32, false},
		{"signer", pinRule{}, 32, false},
	} {
		want := c.want && !secretMode && seal.CryptoInGo
		if got := c.rule.allows(c.key); got != want {
			t.Errorf("%s, key of %d bytes: pins %v, want %v", c.name, c.key, got, want)
		}
	}
}

// TestAEADFirstUseConcurrent: the first NewAEAD calls of a process, from
// 16 goroutines at once, learn the types they wipe before they pin
// (learnWipeTypes): a first store in a sync.Map may wait on a lock, which
// ends a pinned goroutine's process. It runs in fresh processes, where
// nothing has sealed yet.
func TestAEADFirstUseConcurrent(t *testing.T) {
	if !pintest.InFreshProcesses(t, shortOr(30, 6)) {
		return
	}
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	key, err := Random(s, 32)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			a, err := NewAEAD(s, key)
			if err == nil {
				_, err = a.Seal(nil, make([]byte, a.NonceSize()), []byte("message"), nil)
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	s.Close()
}

// TestAdaptersPinned: in the default build NewAEAD's Seal and Open on up
// to seal.PinMax bytes and MAC with SHA-256 or SHA-512 compute with the key
// where the runtime cannot stop them; MAC with another hash, a longer
// Seal and the signers (the control) run where it can.
func TestAdaptersPinned(t *testing.T) {
	pintest.Require(t, seal.Pins(0))
	defer func() { adapterHookForTest = nil }()
	s := newTest(t)
	key, err := Random(s, 32)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAEAD(s, key)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, a.NonceSize())
	sealed, err := a.Seal(nil, nonce, []byte("message"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, _ := ed25519.GenerateKey(nil)
	sg := newTestSigner(t, s, ed)
	for _, c := range []struct {
		name   string
		pinned bool
		run    func() error
	}{
		{"AEAD/Seal", true, func() error { _, err := a.Seal(nil, nonce, []byte("message"), nil); return err }},
		{"AEAD/Open", true, func() error { _, err := a.Open(nil, nonce, sealed, nil); return err }},
		{"AEAD/Seal/long", false, func() error { _, err := a.Seal(nil, nonce, make([]byte, seal.PinMax), nil); return err }},
		{"MAC/sha256", true, func() error { _, err := MAC(s, key, sha256.New, []byte("message"), nil); return err }},
		{"MAC/sha512", true, func() error { _, err := MAC(s, key, sha512.New, []byte("message"), nil); return err }},
		{"MAC/own-hash", false, func() error {
			_, err := MAC(s, key, func() hash.Hash { return ownHash{sha256.New()} }, []byte("message"), nil)
			return err
		}},
		{"Signer/Ed25519", false, func() error { _, err := sg.Sign(nil, []byte("message"), crypto.Hash(0)); return err }},
	} {
		var err error
		preemptible := pintest.Preemptible(t, c.pinned, func(spin func()) {
			adapterHookForTest = spin
			err = c.run()
			adapterHookForTest = nil
		})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if preemptible == c.pinned {
			t.Errorf("%s: preemptible %v, want %v", c.name, preemptible, !c.pinned)
		}
	}
}

// ownHash is SHA-256 under a type of the caller's, which MAC does not pin.
type ownHash struct{ hash.Hash }

// TestWipePointeeStoresNothing: wipePointee, which runs pinned, never
// stores a type it has not met in plainTypes (a store may wait on a
// lock), and still wipes what it points to.
func TestWipePointeeStoresNothing(t *testing.T) {
	type unmet struct{ key [32]byte }
	v := &unmet{}
	v.key[0] = 1
	wipePointee(v)
	if v.key[0] != 0 {
		t.Error("not wiped")
	}
	if _, ok := plainTypes.Load(reflect.TypeOf(unmet{})); ok {
		t.Error("wipePointee stored the type it had not met")
	}
}
