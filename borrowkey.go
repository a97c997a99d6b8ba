package memshuffle

import (
	"context"

	"github.com/memshuffle/memshuffle/internal/seal"
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
// zeroed after it; where it does not, fn runs where the stack cannot
// shrink (seal.Guarded).
//
// The events the borrow raises reach the logger once it has ended.
func borrowKey(s *Shuffler, h Handle, pin pinRule, fn func([]byte) error) error {
	err := borrowKeyQuiet(s, h, pin, fn)
	if s.made() { // a nil or zero Shuffler has refused the borrow
		s.flushLog()
	}
	return err
}

// borrowKeyQuiet is borrowKey with the events left waiting, for the
// caller to hand to the logger when it holds nothing a handler may wait
// for: Sign, once it has given back its turn of the key pool. Handed over
// inside it, a handler that signed with the same Signer waited for that
// turn for ever.
func borrowKeyQuiet(s *Shuffler, h Handle, pin pinRule, fn func([]byte) error) error {
	k, mem, err := borrowSlice[byte](context.Background(), failIfBusy, s, h, shared, pinnedQuiet)
	return call(k, loan{s, h, mem, shared, pinnedQuiet}, err, func(k []byte) (err error) {
		seal.Guarded(pin.allows(len(k)), pin.deep, func() {
			if adapterHookForTest != nil {
				adapterHookForTest()
			}
			err = fn(k)
		})
		return err
	})
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
