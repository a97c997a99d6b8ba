package stacktest

import (
	"encoding/binary"
	"os"
	"testing"

	"github.com/memshuffle/memshuffle/internal/memscan"
)

// GCMBlocks returns patterns of GCM's counter blocks 1 to n for nonce,
// XORed with key16, the first round key (the first 16 bytes of the key):
// what crypto/aes's GCM assembly leaves in its stack frame. It also
// returns the same blocks inverted, for planting as a control. Its frames
// hold the blocks: call it in stackscrub.Unshrinkable and ScrubDeep after
// it there, so that no scan finds them, nor a copy a collection's shrink
// of the stack left.
//
//go:noinline
func GCMBlocks(t *testing.T, key16 *[16]byte, nonce *[12]byte, n int) ([]*memscan.Pattern, [][16]byte) {
	t.Helper()
	var ps []*memscan.Pattern
	var inverted [][16]byte
	for i := 1; i <= n; i++ {
		var b [16]byte
		copy(b[:12], nonce[:])
		binary.BigEndian.PutUint32(b[12:], uint32(i))
		for j := range b {
			b[j] ^= key16[j]
		}
		p, err := memscan.NewPattern(b[:])
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
		for j := range b {
			b[j] ^= 0xff
		}
		inverted = append(inverted, b)
	}
	return ps, inverted
}

// Plant returns a heap buffer holding the blocks GCMBlocks returned
// inverted, as they are: the control's copy. The caller clears it.
func Plant(inverted [][16]byte) []byte {
	planted := make([]byte, 16*len(inverted))
	for i, b := range inverted {
		for j := range b {
			planted[16*i+j] = ^b[j]
		}
	}
	return planted
}

// Count counts the occurrences of ps in the process, logging where each
// is if log, or skips the test where the process cannot be read.
func Count(t *testing.T, ps []*memscan.Pattern, log bool) int {
	t.Helper()
	hits, err := memscan.ScanProcessAll(os.Getpid(), ps)
	if err != nil {
		t.Skip(err)
	}
	n := 0
	for _, hs := range hits {
		if log {
			for _, h := range hs {
				t.Logf("%#x in %s: %s", h.Addr, h.Mapping.Name(), memscan.SignalFrameOf(h.Addr))
			}
		}
		n += len(hs)
	}
	return n
}
