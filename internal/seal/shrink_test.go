package seal

import (
	"runtime"
	"testing"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/secretmode"
	"github.com/memshuffle/memshuffle/internal/stackscrub"
	"github.com/memshuffle/memshuffle/internal/stacktest"
)

// TestUnpinnedAEADCallsStackStays: a Seal or Open that runs unpinned
// (over PinMax bytes, or with the pinning off, as with BoringCrypto) could
// be stopped by a collection at a safe point between the AEAD's steps,
// which may shrink its stack, freeing the old one with what the finished
// steps left below; it runs on a stack no collection shrinks, so the
// zeroing after it reaches every frame. An AEAD that parks in the call, on
// a goroutine whose stack has grown large, finds its stack where it was
// after two collections. The control: the AEAD called directly, without
// Seal's and Open's Guard, whose stack moves.
func TestUnpinnedAEADCallsStackStays(t *testing.T) {
	if secretmode.On {
		t.Skip("in secret mode the runtime erases the stacks it frees")
	}
	if !stackscrub.Anchored {
		t.Skip("no assembly for this architecture reads the stack's bounds: the calls run unanchored (SECURITY.md)")
	}
	for _, c := range []struct {
		n       int
		pin     bool
		control bool
	}{{PinMax + 1, true, false}, {32, false, false}, {PinMax + 1, true, true}} {
		for _, op := range []string{"Seal", "Open"} {
			was := SetPinningForTest(c.pin)
			if got := unpinnedCallMoved(t, op, c.n, c.control); got != c.control {
				t.Errorf("%s of %d bytes, pinning on %v, control %v: the stack moved %v", op, c.n, c.pin, c.control, got)
			}
			SetPinningForTest(was)
		}
	}
}

// unpinnedCallMoved runs op of n bytes with a parkingAEAD (called
// directly, for the control) on a
// goroutine whose stack has grown large, runs two collections while it is
// parked and reports whether its stack moved.
func unpinnedCallMoved(t *testing.T, op string, n int, control bool) bool {
	a := parkingAEAD{parked: make(chan uintptr), release: make(chan struct{}), after: make(chan uintptr, 1)}
	done := make(chan error, 1)
	go func() {
		stacktest.Grow(60)
		x := aeadCipher{a: a}
		var scr Scratch
		buf := make([]byte, n+16)
		var err error
		switch {
		case op == "Seal" && control:
			a.Seal(buf[:0], scr.Nonce[:], buf[:n], nil)
		case op == "Seal":
			x.Seal(buf, buf[:n], 1, &scr)
		case control:
			_, err = a.Open(buf[:0], scr.Nonce[:], buf, nil)
		default:
			err = x.Open(buf[:n], buf, 1, &scr)
		}
		done <- err
	}()
	before := <-a.parked
	runtime.GC()
	runtime.GC()
	close(a.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return before != <-a.after
}

// parkingAEAD is a cipher.AEAD whose Seal and Open report where their
// frame is, park until released and report it again.
type parkingAEAD struct {
	parked, after chan uintptr
	release       chan struct{}
}

func (parkingAEAD) NonceSize() int { return 12 }
func (parkingAEAD) Overhead() int  { return 16 }

func (a parkingAEAD) Seal(dst, _, plain, _ []byte) []byte {
	a.park()
	return append(dst, make([]byte, len(plain)+16)...)
}

func (a parkingAEAD) Open(dst, _, sealed, _ []byte) ([]byte, error) {
	a.park()
	return append(dst, make([]byte, len(sealed)-16)...), nil
}

//go:noinline
func (a parkingAEAD) park() {
	var probe [64]byte
	a.parked <- uintptr(unsafe.Pointer(&probe[0]))
	<-a.release
	a.after <- uintptr(unsafe.Pointer(&probe[0]))
	keepProbe(&probe)
}

//go:noinline
func keepProbe(*[64]byte) {}
