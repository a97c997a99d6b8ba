package memshuffle

import (
	"crypto/rand"
	"errors"
	"hash"
	"runtime/debug"
	"testing"

	"github.com/memshuffle/memshuffle/internal/memscan"
)

// framedHash is a caller's hash (block size 64, size 32) that keeps each
// block it absorbs in a frame of its own, as hash code in Go commonly
// does, and, if panics, panics on its first Write: the inner hash's, whose
// input is the key XOR ipad.
type framedHash struct {
	panics bool
	writes int
}

var framedSink byte

func (h *framedHash) Write(p []byte) (int, error) {
	n := len(p)
	var blk [64]byte
	for len(p) >= 64 {
		copy(blk[:], p)
		absorbFramed(&blk)
		p = p[64:]
	}
	h.writes++
	if h.panics && h.writes == 1 {
		panic("framedHash: on purpose")
	}
	return n, nil
}

//go:noinline
func absorbFramed(blk *[64]byte) {
	for _, b := range blk {
		framedSink ^= b
	}
}

func (h *framedHash) Sum(b []byte) []byte { return append(b, make([]byte, 32)...) }
func (h *framedHash) Reset()              { h.writes = 0 }
func (h *framedHash) Size() int           { return 32 }
func (h *framedHash) BlockSize() int      { return 64 }

// TestMACHashPanicLeavesNoPad: a caller's hash that panics in MAC leaves
// no key XOR ipad on the goroutine's stack, as one that returns does not.
// MAC recovered the panic outside the guarded call, whose zeroing then ran
// from below the panicking frames and left them as they were. The
// goroutine that called MAC waits, its stack as MAC left it, while the
// process is scanned; the scan is first shown to find a planted copy.
func TestMACHashPanicLeavesNoPad(t *testing.T) {
	skipScanUnderRace(t)
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	for _, panics := range []bool{false, true} {
		s := newTest(t)
		key := make([]byte, 32)
		rand.Read(key)
		p := ipadPattern(t, key)
		h, err := CopyFrom(s, key) // wipes key
		if err != nil {
			t.Fatal(err)
		}
		done, release := make(chan error), make(chan struct{})
		go func() {
			_, err := MAC(s, h, func() hash.Hash { return &framedHash{panics: panics} }, []byte("msg"), nil)
			done <- err
			<-release
		}()
		err = <-done
		if panics != errors.Is(err, ErrPanicked) {
			t.Fatalf("hash panics %v: MAC: %v", panics, err)
		}
		n := len(scanSelf(t, p))
		close(release)
		if n != 0 {
			t.Errorf("hash panics %v: %d copies of the key XOR ipad left after MAC returned %v", panics, n, err)
		}
	}
}

// ipadPattern returns the pattern of key XOR ipad (HMAC's inner pad, for a
// key of at most 64 bytes), having shown that a scan finds a planted copy
// of it, once.
func ipadPattern(t *testing.T, key []byte) *memscan.Pattern {
	t.Helper()
	ipad := heapBytes(64)
	copy(ipad, key)
	for i := range ipad {
		ipad[i] ^= 0x36
	}
	p, err := memscan.NewPattern(ipad)
	if err != nil {
		t.Fatal(err)
	}
	planted := plant(ipad)
	Wipe(ipad)
	if n := len(scanSelf(t, p)); n != 1 {
		t.Fatalf("control: %d copies of the planted pad found, want 1", n)
	}
	Wipe(planted)
	return p
}
