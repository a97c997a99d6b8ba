//go:build amd64 || arm64 || arm

package memshuffle

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"hash"
	"runtime"
	"testing"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/stackscrub"
	"github.com/memshuffle/memshuffle/internal/stacktest"
)

// TestAdaptersUnpinnedStackStays: where an adapter computes with the key
// unpinned (MAC with a caller's hash, NewAEAD over more than seal.PinMax
// bytes, the signers and NewSigner), it does so on a stack that no
// collection shrinks, so that the zeroing after the call reaches every
// frame it used: parked there while collections run, the call's stack
// does not move. Each call starts on a goroutine whose stack has grown
// large, as a server's goroutines do; the control is that goroutine's
// own stack, which the same collections shrink.
func TestAdaptersUnpinnedStackStays(t *testing.T) {
	if secretMode {
		t.Skip("in secret mode the runtime erases the stacks it frees")
	}
	defer func() { adapterHookForTest = nil }()
	s := newTest(t)
	cases := unpinnedAdapterCalls(t, s)
	for _, c := range cases {
		if stackMoved(t, c.name, c.run) {
			t.Errorf("%s: the stack of the call moved while it was parked during collections", c.name)
		}
	}
	if !stackMoved(t, "control", func() error { adapterHookForTest(); return nil }) {
		t.Error("control: the goroutine's own stack did not move (GODEBUG=gcshrinkstackoff=1?)")
	}
}

// TestAdaptersStackDoesNotGrow: each adapter call that runs unpinned,
// started at 100 distances from the end of its goroutine's stack, begins
// computing with the key with a quarter of the stack in use (no
// collection may shrink it), and finds the stack's bounds where they were
// then when it is done: it did not grow, which copies the stack and frees
// the old one with what the call had written.
func TestAdaptersStackDoesNotGrow(t *testing.T) {
	if secretMode {
		t.Skip("in secret mode the calls run unanchored; the runtime erases the stacks it frees")
	}
	defer func() { adapterHookForTest = nil }()
	s := newTest(t)
	for _, c := range unpinnedAdapterCalls(t, s) {
		grew, short := 0, 0
		for depth := range 100 {
			// The bounds are compared at the call's end, past the guarded
			// part: an allocation there (a Signer's pool) can grow the
			// stack, with no key in it, depending on the allocator's state. A guarded part that outgrows its reservation
			// grows it at the same depth every time, so a growth counts
			// when a second call at that depth grows too.
			for try := 0; try < 2; try++ {
				moved := false
				done := make(chan error, 1)
				go stacktest.AtDepth(depth, func() {
					var lo, hi uintptr
					adapterHookForTest = func() {
						lo, hi = stackscrub.Bounds()
						var here byte
						if hi-uintptr(unsafe.Pointer(&here)) < (hi-lo)/4 {
							short++ // a collection now could shrink the stack
						}
					}
					err := c.run()
					adapterHookForTest = nil
					if lo2, hi2 := stackscrub.Bounds(); lo2 != lo || hi2 != hi {
						moved = true
					}
					done <- err
				})
				if err := <-done; err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if !moved {
					break
				}
				if try == 1 {
					grew++
				}
			}
		}
		if grew != 0 || short != 0 {
			t.Errorf("%s: of 100 calls, the stack grew during %d and was less than a quarter in use in %d", c.name, grew, short)
		}
	}
}

// stackMoved runs run on a goroutine whose stack has grown large and
// reports whether the stack adapterHookForTest parks on moved while two
// collections ran.
func stackMoved(t *testing.T, name string, run func() error) bool {
	t.Helper()
	parked, release := make(chan uintptr), make(chan struct{})
	var after uintptr
	adapterHookForTest = func() {
		var probe [64]byte
		parked <- uintptr(unsafe.Pointer(&probe[0]))
		<-release
		after = uintptr(unsafe.Pointer(&probe[0]))
		parkHere(&probe)
	}
	done := make(chan error, 1)
	go func() {
		stacktest.Grow(60)
		done <- run()
	}()
	var before uintptr
	select {
	case before = <-parked:
	case err := <-done:
		t.Fatalf("%s: returned without computing with the key (%v)", name, err)
	}
	runtime.GC()
	runtime.GC()
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	adapterHookForTest = nil
	return before != after
}

//go:noinline
func parkHere(*[64]byte) {}

// adapterCall is one use of an adapter that computes with the key
// unpinned.
type adapterCall struct {
	name string
	run  func() error
}

// unpinnedAdapterCalls returns the adapter calls that run unpinned, with
// keys made in s: MAC with a caller's hash, NewAEAD's Seal over more than
// seal.PinMax bytes, NewSigner and each signer's Sign.
func unpinnedAdapterCalls(t *testing.T, s *Shuffler) []adapterCall {
	t.Helper()
	key, err := Random(s, 32)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAEAD(s, key)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, a.NonceSize())
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	der := map[string]Handle{}
	for name, k := range map[string]any{"Ed25519": ed, "ECDSA": ec, "RSA": rk} {
		if der[name], err = CopyFrom(s, pkcs8(t, k)); err != nil {
			t.Fatal(err)
		}
	}
	signers := map[string]crypto.Signer{}
	for name, h := range der {
		if signers[name], err = NewSigner(s, h); err != nil {
			t.Fatal(err)
		}
	}
	digest := make([]byte, 32)
	return []adapterCall{
		{"MAC/own-hash", func() error {
			_, err := MAC(s, key, func() hash.Hash { return ownHash{sha256.New()} }, []byte("message"), nil)
			return err
		}},
		{"AEAD/Seal/long", func() error { _, err := a.Seal(nil, nonce, make([]byte, 2<<20), nil); return err }},
		{"NewSigner/Ed25519", func() error { _, err := NewSigner(s, der["Ed25519"]); return err }},
		{"NewSigner/ECDSA", func() error { _, err := NewSigner(s, der["ECDSA"]); return err }},
		{"Signer/Ed25519", func() error { _, err := signers["Ed25519"].Sign(nil, digest, crypto.Hash(0)); return err }},
		{"Signer/ECDSA", func() error { _, err := signers["ECDSA"].Sign(rand.Reader, digest, crypto.SHA256); return err }},
		{"Signer/RSA", func() error { _, err := signers["RSA"].Sign(nil, digest, crypto.SHA256); return err }},
	}
}
