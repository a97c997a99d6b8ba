package memshuffle

import (
	"github.com/memshuffle/memshuffle/internal/seal"
	"github.com/memshuffle/memshuffle/internal/stackscrub"
)

// borrowKey is BorrowViewSlice for the crypto adapters (MAC, NewAEAD,
// NewSigner and its Sign). fn computes with the key through the standard
// library's assembly, which holds key material in vector registers, so a
// signal taken meanwhile would save it in a frame on the thread's signal
// stack: fn runs with that stack watched (aesctr.WatchSignals) and the
// registers cleared before the watch ends. The watch covers fn alone, not
// the decryption and sealing around it, whose own guards plant the same
// canaries and would hide a frame that landed before them.
//
// Where pin allows it, fn also runs pinned, so that no preemption saves
// the registers where nothing can wipe them; the stack its calls used is
// zeroed after it (seal.Guard). Where it does not, fn may park or stop at
// a safe point, where a collection could shrink its stack and free the
// old one with what fn's calls left in it: it runs where the stack cannot
// shrink (stackscrub.Unshrinkable), except in secret mode, whose runtime
// erases a stack it frees.
func borrowKey(s *Shuffler, h Handle, pin pinRule, fn func([]byte) error) error {
	return BorrowViewSlice(s, h, func(k []byte) error {
		pinned := pin.allows(len(k))
		if pinned || secretMode {
			return guarded(pin.deep, pinned, k, fn)
		}
		var err error
		stackscrub.Unshrinkable(pin.deep, func() { err = guarded(pin.deep, false, k, fn) })
		return err
	})
}

// guarded runs fn(k) under a seal.Guard, which zeroes the stack its calls
// used: as deep as the signers' reach if deep.
func guarded(deep, pinned bool, k []byte, fn func([]byte) error) error {
	g := seal.Enter
	if deep {
		g = seal.EnterDeep
	}
	defer g(pinned).Exit()
	if adapterHookForTest != nil {
		adapterHookForTest()
	}
	return fn(k)
}

// adapterHookForTest, when set, runs where an adapter computes with the
// key: tests probe there whether the runtime can preempt the goroutine.
var adapterHookForTest func()

// pinRule says when borrowKey pins fn: where fn cannot park or panic (the
// standard library's GCM over checked arguments for NewAEAD, its SHA-2
// hashes for MAC), when it computes over at most seal.PinMax bytes, the
// key's and extra, so that it is brief. The zero pinRule pins nothing.
type pinRule struct {
	safe  bool // fn neither parks nor panics
	extra int  // bytes fn computes over besides the key
	deep  bool // fn's calls reach below stackscrub.Depth (the signers)
}

// allows reports whether fn runs pinned with a key of n bytes.
func (r pinRule) allows(n int) bool { return r.safe && seal.Pins(n+r.extra) }
