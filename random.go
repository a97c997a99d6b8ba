package memshuffle

import "crypto/rand"

// Random makes an entry of n bytes from crypto/rand, generated straight
// into the rented entry, so the secret never exists anywhere else: the way
// to make a key, a nonce seed or a token. n must be from 1 to MaxEntrySize
// (ErrInvalidSize).
func Random(s *Shuffler, n int) (Handle, error) {
	return newFilled(s, n, func(b []byte) error {
		// crypto/rand.Read never fails; the system's generator going away
		// ends the process instead.
		_, _ = rand.Read(b)
		return nil
	})
}
