package memshuffle

import (
	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/nopreempt"
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
// With pin, fn also runs pinned (internal/nopreempt) until the registers
// are cleared, so that no preemption saves them where nothing can wipe
// them (see internal/seal's Seal): only for fn that cannot park or panic,
// the standard library's GCM over checked arguments (NewAEAD), and only
// in the default build, as secret mode keeps the preemptions out by
// itself.
func borrowKey(s *Shuffler, h Handle, pin bool, fn func([]byte) error) error {
	return BorrowViewSlice(s, h, func(k []byte) error {
		w := aesctr.WatchSignals()
		defer w.End()
		if pin && !secretMode {
			nopreempt.Pin()
			defer nopreempt.Unpin()
		}
		defer aesctr.ClearVectors()
		return fn(k)
	})
}
