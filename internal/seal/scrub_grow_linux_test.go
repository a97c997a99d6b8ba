package seal

import (
	"crypto/rand"
	"encoding/binary"
	"os"
	"testing"

	"github.com/memshuffle/memshuffle/internal/ctr"
	"github.com/memshuffle/memshuffle/internal/memscan"
	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/stackscrub"
	"github.com/memshuffle/memshuffle/internal/stacktest"
)

// TestChaChaKeyNotLeftByStackGrowth seals from goroutines whose stacks are
// close to full, at every distance from the end in steps of about 100
// bytes, so that at some depth the stack has to grow right after the
// assembly has left the key in its frame. A stack that grows is copied and
// the old one freed as it is, with that frame in it. After each seal the
// test scans the process for the key, and says of each copy whether it is
// in a signal frame: a signal taken during the assembly leaves the key's
// rows there, which aesctr.WatchSignals must wipe (on a loaded machine,
// without the watch, 2 of 120 seals left them in Y11).
func TestChaChaKeyNotLeftByStackGrowth(t *testing.T) {
	if raceEnabled {
		// The race detector's shadow memory makes each of the 120 scans
		// of the process take seconds, and its instrumentation changes
		// the frames whose depths the test steps through.
		t.Skip("a scan of the process per seal is too slow under the race detector")
	}
	key, salt := randomKey(t)
	var ps []*memscan.Pattern
	for i := 0; i < 32; i += 16 {
		p, err := memscan.NewPattern(key[i : i+16])
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	var state [ctr.StateSize]byte
	c, err := New(ChaCha20Poly1305, key, salt, &state)
	if err != nil {
		t.Fatal(err)
	}
	osmem.Wipe(key[:])
	scr := new(Scratch)
	plain := make([]byte, 1024) // over 320 bytes: the assembly keeps the key in its frame
	dst := make([]byte, len(plain)+c.Overhead())
	leaks := 0
	for depth := range 120 {
		done := make(chan struct{})
		go func() {
			defer close(done)
			stacktest.AtDepth(depth, func() { c.Seal(dst, plain, uint64(depth), scr) })
		}()
		<-done
		// The AEAD's own copy of the key is on the heap: count past it,
		// and take it as the control that the scan sees the heap.
		hits, err := memscan.ScanProcessAll(os.Getpid(), ps)
		if err != nil {
			t.Skip(err)
		}
		n := len(hits[0]) + len(hits[1])
		if len(hits[0]) == 0 || len(hits[1]) == 0 {
			t.Fatalf("depth %d: the AEAD's own copy of the key not found (%d and %d hits of its halves): the scan does not see the heap", depth, len(hits[0]), len(hits[1]))
		}
		if n > 2 {
			t.Logf("depth %d: %d blocks of the key", depth, n)
			for _, hs := range hits {
				for _, h := range hs {
					t.Logf("  %#x in %s: %s", h.Addr, h.Mapping.Name(), memscan.SignalFrameOf(h.Addr))
				}
			}
			leaks++
		}
	}
	c.Wipe()
	if leaks > 0 {
		t.Errorf("the key was left in memory after %d of 120 seals", leaks)
	}
	hits, err := memscan.ScanProcessAll(os.Getpid(), ps)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(hits[0]) + len(hits[1]); n != 0 {
		t.Errorf("%d blocks of the key in memory after Wipe, want 0", n)
	}
}

// TestGCMKeyNotLeftOnStack seals and opens with AES-256-GCM from
// goroutines whose stacks end at every distance from the call, as
// TestChaChaKeyNotLeftByStackGrowth does, and scans the process after each
// for what crypto/aes's GCM assembly writes in its frame: each counter
// block XORed with the first round key, the key's first 16 bytes, which
// with the nonce give those bytes. Every call uses one counter value, so
// that one set of patterns covers them all. The control: the same blocks,
// planted, are found.
func TestGCMKeyNotLeftOnStack(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation changes the frames whose depths the test steps through")
	}
	key, salt := randomKey(t)
	const c0 = 0x0123456789
	var nonce [12]byte // as aeadCipher.nonce makes it
	copy(nonce[:4], salt[:4])
	binary.BigEndian.PutUint64(nonce[4:], c0)
	plain := make([]byte, 256)  // 16 blocks: the assembly's 8-block path, twice
	blocks := len(plain)/16 + 2 // counter values 1 (the tag's) to 17
	// GCMBlocks's frames hold the blocks until ScrubDeep zeroes them, in
	// a stretch no collection shrinks the stack in: a shrink meanwhile
	// frees a copy of them where no scrub reaches (a CI run under load
	// found one block, at one address after every depth).
	var ps []*memscan.Pattern
	var inverted [][16]byte
	stackscrub.Unshrinkable(true, func() {
		ps, inverted = stacktest.GCMBlocks(t, (*[16]byte)(key[:16]), &nonce, blocks)
		stackscrub.ScrubDeep()
	})
	var state [ctr.StateSize]byte
	c, err := New(AES256GCM, key, salt, &state)
	if err != nil {
		t.Fatal(err)
	}
	osmem.Wipe(key[:])
	scr := new(Scratch)
	sealed := make([]byte, len(plain)+c.Overhead())
	opened := make([]byte, len(plain))
	// A scan after each depth, as a stack freed by growth is soon reused
	// and overwritten by the next goroutine's.
	leaks := 0
	for depth := range 60 {
		done := make(chan struct{})
		go func() {
			defer close(done)
			stacktest.AtDepth(depth, func() {
				c.Seal(sealed, plain, c0, scr)
				if err := c.Open(opened, sealed, c0, scr); err != nil {
					panic(err)
				}
			})
		}()
		<-done
		if n := stacktest.Count(t, ps, true); n != 0 {
			t.Logf("depth %d: %d counter blocks masked with the key", depth, n)
			leaks++
		}
	}
	if leaks != 0 {
		t.Errorf("counter blocks masked with the key left in memory after %d of 60 seals and opens", leaks)
	}
	c.Wipe()
	planted := stacktest.Plant(inverted)
	if n := stacktest.Count(t, ps, false); n < len(inverted) {
		t.Errorf("control: %d of %d planted blocks found", n, len(inverted))
	}
	clear(planted)
}

// randomKey returns a random key and salt in a mapping of their own, off
// the Go heap, unmapped when the test ends.
func randomKey(t *testing.T) (*[32]byte, *[8]byte) {
	t.Helper()
	reg, err := osmem.Map(4096, osmem.Flags{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { osmem.Unmap(reg) })
	key, salt := (*[32]byte)(reg.Data[:32]), (*[8]byte)(reg.Data[32:40])
	rand.Read(key[:])
	rand.Read(salt[:])
	return key, salt
}
