package memshuffle

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"runtime"
	"runtime/debug"
	"testing"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/memscan"
	"github.com/memshuffle/memshuffle/internal/stackscrub"
	"github.com/memshuffle/memshuffle/internal/stacktest"
)

// TestAdaptersScrubStack uses NewAEAD with an AES-128 key and an
// Ed25519 signer from goroutines whose stacks end at every distance from
// the call, then looks for what the standard library leaves in its frames:
// in the whole process, GCM's counter blocks XORed with the first round
// key (for AES-128 the key itself, to anyone who knows the nonce); on the
// signing goroutine's stack after each signature and each NewSigner, the
// Ed25519 nonce prefix that signing keeps in a SHA-512 state and
// NewSigner's expansion of the key in its own. Every seal uses one nonce, so
// that one set of patterns covers them all. The control: the same blocks,
// planted, are found.
func TestAdaptersScrubStack(t *testing.T) {
	if raceBuild {
		t.Skip("the race detector's instrumentation changes the frames whose depths the test steps through")
	}
	s := newTest(t)
	key := make([]byte, 16)
	rand.Read(key)
	nonce := make([]byte, 12)
	rand.Read(nonce)
	plain := make([]byte, 256) // 16 blocks: the assembly's 8-block path, twice
	blocks := len(plain)/16 + 2
	var ps []*memscan.Pattern
	var inverted [][16]byte
	scrubbed(func() {
		ps, inverted = stacktest.GCMBlocks(t, (*[16]byte)(key), (*[12]byte)(nonce), blocks)
	})
	kh, err := CopyFrom(s, key)
	if err != nil {
		t.Fatal(err)
	}
	Wipe(key)
	a, err := NewAEAD(s, kh)
	if err != nil {
		t.Fatal(err)
	}

	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(ed)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha512.Sum512(ed.Seed())
	prefix, err := memscan.NewPattern(sum[32:])
	if err != nil {
		t.Fatal(err)
	}
	var invPrefix [32]byte // inverted, so that no scan finds the test's own copy
	for i, b := range sum[32:] {
		invPrefix[i] = ^b
	}
	Wipe(sum[:])
	Wipe(ed)
	dh, err := CopyFrom(s, der)
	if err != nil {
		t.Fatal(err)
	}
	Wipe(der)
	signer, err := NewSigner(s, dh)
	if err != nil {
		t.Fatal(err)
	}

	before := stacktest.Count(t, []*memscan.Pattern{prefix}, false)
	// No collection runs during the calls, so that what is measured is
	// the zeroing (TestAdaptersUnpinnedStackStays shows the stack does not
	// shrink under them).
	runtime.GC()
	gcPercent := debug.SetGCPercent(-1)
	onStack, onStackNew := 0, 0
	for depth := range 60 {
		done := make(chan error)
		go func() {
			var err error
			stacktest.AtDepth(depth, func() {
				// NewSigner expands the key (ed25519.NewKeyFromSeed) in
				// frames below this one.
				if _, err = NewSigner(s, dh); err != nil {
					return
				}
				onStackNew += countBelow(&invPrefix)
				defer func() { onStack += countBelow(&invPrefix) }()
				var sealed []byte
				if sealed, err = a.Seal(nil, nonce, plain, nil); err != nil {
					return
				}
				if _, err = a.Open(nil, nonce, sealed, nil); err != nil {
					return
				}
				_, err = signer.Sign(nil, plain[:32], crypto.Hash(0))
			})
			done <- err
		}()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	debug.SetGCPercent(gcPercent)
	if n := stacktest.Count(t, ps, true); n != 0 {
		t.Errorf("%d GCM counter blocks masked with the AES-128 key left in memory", n)
	}
	if onStack != 0 {
		t.Errorf("the Ed25519 nonce prefix left on the signing goroutine's stack after %d of 60 signatures", onStack)
	}
	if onStackNew != 0 {
		t.Errorf("the Ed25519 nonce prefix left on the goroutine's stack after %d of 60 NewSigner calls", onStackNew)
	}
	// Not asserted: on the heap crypto/ed25519's cache keeps one copy
	// (TestAdapterCopies counts it).
	t.Logf("%d copies of the Ed25519 nonce prefix in the process after signing, %d before", stacktest.Count(t, []*memscan.Pattern{prefix}, false), before)
	planted := stacktest.Plant(inverted)
	if n := stacktest.Count(t, ps, false); n < len(inverted) {
		t.Errorf("control: %d of %d planted blocks found", n, len(inverted))
	}
	clear(planted)
}

// countBelow reports whether the 16 KiB of stack below its caller's frame,
// where the frames of the calls the caller has just returned from were,
// hold the bytes inv holds inverted; it reads them without forming them.
// The caller's stack must reach that far and not move meanwhile.
//
//go:noinline
func countBelow(inv *[32]byte) int {
	var anchor [8]byte
	const span = stackscrub.DeepDepth
	low := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(&anchor[0]), -span)), span)
	for i := 0; i+len(inv) <= len(low); i++ {
		j := 0
		for j < len(inv) && low[i+j] == ^inv[j] {
			j++
		}
		if j == len(inv) {
			return 1
		}
	}
	return 0
}
