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
// the registers where nothing can wipe them (seal.Guard).
func borrowKey(s *Shuffler, h Handle, pin pinRule, fn func([]byte) error) error {
	return BorrowViewSlice(s, h, func(k []byte) error {
		defer seal.Enter(pin.allows(len(k))).Exit()
		if adapterHookForTest != nil {
			adapterHookForTest()
		}
		if pin.deep {
			return callScrubbedDeep(fn, k)
		}
		return callScrubbed(fn, k)
	})
}

// callScrubbed calls fn(k) and zeroes the stack its calls used
// (stackscrub.Depth bytes below this frame), where the standard library's
// GCM and HMAC leave key material: GCM, counter blocks XORed with the
// first round key, which with the nonce give the key's first 16 bytes.
// The room is reserved first, so that the stack does not grow, copied and
// the old one freed, while the key is in those frames. If fn panics, the
// frames stay until the next calls overwrite them.
//
//go:noinline
func callScrubbed(fn func([]byte) error, k []byte) error {
	stackscrub.Reserve()
	err := fn(k)
	stackscrub.Scrub()
	return err
}

// callScrubbedDeep is callScrubbed for the signers, whose calls go deeper
// (stackscrub.DeepDepth): Ed25519 leaves a SHA-512 state holding the key's
// nonce prefix in its frame.
//
//go:noinline
func callScrubbedDeep(fn func([]byte) error, k []byte) error {
	stackscrub.ReserveDeep()
	err := fn(k)
	stackscrub.ScrubDeep()
	return err
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
