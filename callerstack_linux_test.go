//go:build amd64 || arm64 || arm

package memshuffle

import (
	"crypto/rand"
	"os"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"testing"

	"github.com/memshuffle/memshuffle/internal/memscan"
	"github.com/memshuffle/memshuffle/internal/stackscrub"
	"github.com/memshuffle/memshuffle/internal/stacktest"
)

// TestCallerStackSecretNotLeft: a secret the caller hands CopyFrom or
// RotateKey in an array on its own stack is not left in a stack the
// runtime freed. Both calls go deep enough to grow the stack, which copies
// the caller's frame, secret and all, and frees the old stack unwiped;
// they used to wipe only the new copy. Each call runs on a new goroutine
// at one of up to 200 depths, so that some of them grow the stack, and
// the process is scanned after each that did, until movedScans have; the
// control is a planted copy, found.
func TestCallerStackSecretNotLeft(t *testing.T) {
	skipScanUnderRace(t)
	for _, tc := range []struct {
		name string
		call func(s *Shuffler, inv *[32]byte) error
	}{
		{"CopyFrom", copyFromStack},
		{"RotateKey", rotateKeyStack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTest(t)
			if tc.name == "RotateKey" && !s.Stats().KeyOffHeap {
				t.Skip("the key schedule is crypto/aes's, on the Go heap, where the scan finds the key")
			}
			var inv [32]byte
			ps := make(chan *memscan.Pattern)
			go func() {
				// Scrubbed before the send, which may park the
				// goroutine.
				var p *memscan.Pattern
				scrubbed(func() { p = invertedPattern(t, &inv) })
				ps <- p
			}()
			p := <-ps
			defer debug.SetGCPercent(debug.SetGCPercent(-1)) // freed stacks stay as they are
			moved, left, calls := 0, 0, 0
			for depth := range 200 {
				if moved >= movedScans {
					break // every scan done
				}
				calls++
				done := make(chan bool)
				go func() {
					var before, after uintptr
					// Sent however the goroutine ends: a scan that cannot
					// read the process fails the test with t.Fatal, which
					// ends this goroutine, not the test's.
					defer func() { done <- before != after }()
					stacktest.AtDepth(depth, func() {
						before, _ = stackscrub.Bounds()
						if err := tc.call(s, &inv); err != nil {
							t.Error(err)
						}
						after, _ = stackscrub.Bounds()
					})
					// The next goroutine would reuse the freed stack: look
					// now, while nothing else runs.
					if before != after && moved < movedScans {
						left += countOutsideArenas(t, p)
					}
				}()
				if <-done {
					moved++
				}
			}
			t.Logf("%d of %d calls moved their stack; %d copies of the secret left after them", moved, calls, left)
			if moved < movedScans {
				t.Errorf("%d of %d calls moved their stack, want %d scans after one that did", moved, calls, movedScans)
			}
			if left != 0 {
				t.Errorf("%d copies of the secret left outside the Shuffler's arenas", left)
			}
			if ib := (*inboxMem)(atomic.LoadPointer(&inbox)); ib != nil && !keyIsZero(ib.data) {
				t.Error("the inbox is not wiped")
			}
			planted := make([]byte, 32)
			for i := range planted {
				planted[i] = ^inv[i]
			}
			if countOutsideArenas(t, p) == 0 {
				t.Error("control: the planted copy was not found")
			}
			clear(planted)
			runtime.KeepAlive(planted)
		})
	}
}

// movedScans is after how many of the calls that moved their stack
// TestCallerStackSecretNotLeft scans the process.
const movedScans = 16

// invertedPattern fills inv with a random secret inverted and returns a
// pattern of the secret. Its frames hold the secret: call it in scrubbed.
//
//go:noinline
func invertedPattern(t *testing.T, inv *[32]byte) *memscan.Pattern {
	var b [32]byte
	rand.Read(b[:])
	p, err := memscan.NewPattern(b[:])
	if err != nil {
		t.Error(err)
	}
	for i := range b {
		inv[i] = ^b[i]
	}
	clear(b[:])
	return p
}

// copyFromStack hands CopyFrom the secret in an array of its frame.
//
//go:noinline
func copyFromStack(s *Shuffler, inv *[32]byte) error {
	var b [32]byte
	for i := range b {
		b[i] = ^inv[i]
	}
	_, err := CopyFrom(s, b[:])
	return err
}

// rotateKeyStack hands RotateKey the secret as a key in an array of its
// frame.
//
//go:noinline
func rotateKeyStack(s *Shuffler, inv *[32]byte) error {
	var b [32]byte
	for i := range b {
		b[i] = ^inv[i]
	}
	return s.RotateKey(&b, nil)
}

// countOutsideArenas counts p in the process outside the mappings left
// out of core dumps (the Shuffler's arenas and own region, which hold the
// key's round keys, the first two of which are the key).
func countOutsideArenas(t *testing.T, p *memscan.Pattern) int {
	t.Helper()
	hits, err := memscan.ScanProcessAll(os.Getpid(), []*memscan.Pattern{p})
	if err != nil {
		t.Skip(err)
	}
	n := 0
	for _, h := range hits[0] {
		if !h.Mapping.DontDump {
			n++
			t.Logf("%#x in %s", h.Addr, h.Mapping.Name())
		}
	}
	return n
}
