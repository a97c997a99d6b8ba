package memshuffle

import (
	"crypto/rand"
	"crypto/sha256"
	"hash"
	"os"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/memshuffle/memshuffle/internal/memscan"
	"github.com/memshuffle/memshuffle/internal/stackscrub"
	"github.com/memshuffle/memshuffle/internal/stacktest"
)

// parkingHash is a caller's hash for MAC that, like any code of a caller,
// may park: its first Write copies what it is given (the key's inner pad)
// into a frame of its own, returns from it, and then waits on park until
// released, a collection free to shrink its goroutine's stack meanwhile.
// Its sum is SHA-256's, so the MAC is a real one.
type parkingHash struct {
	hash.Hash
	park chan chan struct{} // nil: do not park
}

func (h *parkingHash) Write(p []byte) (int, error) {
	h.Hash.Write(p)
	if h.park != nil {
		release := make(chan struct{})
		h.park <- release
		copyInFrame(p)
		<-release
		h.park = nil
	}
	return len(p), nil
}

// frameMask tells the hash's copy of what it is given from the caller's
// (MAC's pad), which holds it too while the hash is parked.
const frameMask = 0xa5

// copyInFrame holds p, masked with frameMask, in a frame a few hundred bytes below its caller,
// as a hash's block function would, below where the calls that park
// reach.
//
//go:noinline
func copyInFrame(p []byte) byte {
	var pad [1024]byte
	x := copyDeeper(p)
	keepPad(&pad)
	return x
}

// keepPad makes pad a part of its caller's frame.
//
//go:noinline
func keepPad(pad *[1024]byte) {}

//go:noinline
func copyDeeper(p []byte) byte {
	var buf [128]byte
	for i, b := range p {
		buf[i] = b ^ frameMask
	}
	var x byte
	for _, b := range buf {
		x ^= b
	}
	return x
}

// TestMACParkedStackShrink gives MAC a hash of the caller's that parks
// mid-computation, on a goroutine whose stack has grown large, and runs
// collections while it is parked: each may shrink the stack, copying the
// frames in use and freeing the old stack with what lay below them, the
// key's inner pad among it. Then it searches the process for that pad.
// The control: a planted copy is found.
func TestMACParkedStackShrink(t *testing.T) {
	if raceBuild {
		t.Skip("the race detector's instrumentation changes frames")
	}
	if !stackscrub.Anchored {
		t.Skip("no assembly for this architecture reads the stack's bounds: MAC runs unanchored (SECURITY.md)")
	}
	s := newTest(t)
	key := make([]byte, sha256.BlockSize)
	rand.Read(key)
	// The pattern is built in a frame zeroed after it, where no collection
	// shrinks the stack (see TestGCMKeyNotLeftOnStack); the test keeps the
	// pad only inverted.
	var inv [sha256.BlockSize]byte
	var pat *memscan.Pattern
	var err error
	scrubbed(func() {
		ipad := make([]byte, sha256.BlockSize)
		for i, b := range key {
			ipad[i] = b ^ 0x36 ^ frameMask
			inv[i] = ^ipad[i]
		}
		pat, err = memscan.NewPattern(ipad)
		Wipe(ipad)
	})
	if err != nil {
		t.Fatal(err)
	}
	kh, err := CopyFrom(s, key)
	if err != nil {
		t.Fatal(err)
	}
	Wipe(key)
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Skip(err)
	}
	defer mem.Close()
	t.Logf("before: %#x", find(t, pat))
	left := 0
	const rounds = 20
	// No collection but the test's own: one that ran on its own before
	// the control's scan could shrink the stack first (in secret mode the
	// runtime then erases the old one, and the control finds nothing).
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	for range rounds {
		park := make(chan chan struct{})
		done := make(chan error, 1)
		go func() {
			stacktest.Grow(60)
			made := 0
			newHash := func() hash.Hash {
				made++
				if made == 1 { // the inner hash, which MAC writes the pad to
					return &parkingHash{Hash: sha256.New(), park: park}
				}
				return &parkingHash{Hash: sha256.New()}
			}
			_, err := MAC(s, kh, newHash, []byte("m"), nil)
			done <- err
		}()
		var release chan struct{}
		select {
		case release = <-park:
		case err := <-done:
			t.Fatalf("MAC returned without writing to its hash: %v", err)
		}
		// The control: parked, the hash's frame has the pad, and the scan
		// finds it there.
		addrs := find(t, pat)
		if len(addrs) == 0 {
			t.Fatal("parked: the pad not found in the hash's frame")
		}
		runtime.GC()
		runtime.GC()
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if holdsInverted(t, mem, a, &inv) {
				left++
			}
		}
	}
	if left != 0 {
		t.Errorf("over %d MACs parked while collections ran, the key's inner pad was left %d times where the hash's frames had been", rounds, left)
	}
}

// holdsInverted reports whether the process holds at addr the bytes inv
// holds inverted, without forming them anywhere but where they are read
// to, which it clears.
func holdsInverted(t *testing.T, mem *os.File, addr uint64, inv *[sha256.BlockSize]byte) bool {
	var got [sha256.BlockSize]byte
	defer clear(got[:])
	if _, err := mem.ReadAt(got[:], int64(addr)); err != nil {
		t.Fatal(err)
	}
	for i, b := range got {
		if b != ^inv[i] {
			return false
		}
	}
	return true
}

// find returns where p is in the process.
func find(t *testing.T, p *memscan.Pattern) []uint64 {
	t.Helper()
	hits, err := memscan.ScanProcessAll(os.Getpid(), []*memscan.Pattern{p})
	if err != nil {
		t.Skip(err)
	}
	var at []uint64
	for _, hs := range hits {
		for _, h := range hs {
			at = append(at, uint64(h.Addr))
		}
	}
	return at
}
