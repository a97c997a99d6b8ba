package memshuffle

import "github.com/memshuffle/memshuffle/internal/aesctr"

// borrowKey is BorrowViewSlice for the crypto adapters (MAC, NewAEAD,
// NewSigner and its Sign). fn computes with the key through the standard
// library's assembly, which holds key material in vector registers, so a
// signal taken meanwhile would save it in a frame on the thread's signal
// stack: fn runs with that stack watched (aesctr.WatchSignals) and the
// registers cleared before the watch ends. The watch covers fn alone, not
// the decryption and sealing around it, whose own guards plant the same
// canaries and would hide a frame that landed before them.
func borrowKey(s *Shuffler, h Handle, fn func([]byte) error) error {
	return BorrowViewSlice(s, h, func(k []byte) error {
		w := aesctr.WatchSignals()
		defer w.End()
		defer aesctr.ClearVectors()
		return fn(k)
	})
}
