package memshuffle

import (
	"crypto/fips140"
	"crypto/hmac"
	"fmt"
	"hash"
	"strings"
)

// cipherRefused is New's and RotateKey's error when the cipher layer could
// not be built for mode c. With a 32-byte key the only refusal there is
// the process's policy: GODEBUG=fips140=only, where crypto/cipher builds
// GCM only with nonces of its own drawing and x/crypto's chacha20poly1305
// refuses to build at all. AES256CTR is never refused: without AES-NI it
// runs on crypto/aes's block cipher.
func cipherRefused(c Cipher, err error) error {
	return fmt.Errorf("%w: %v: %w", ErrUnsupported, c, err)
}

// aeadRefused reports whether the FIPS 140-only mode forbids what AEAD
// does: GCM under nonces the caller chooses.
func aeadRefused() error {
	if !fips140.Enforced() {
		return nil
	}
	return fmt.Errorf("%w: GCM with the caller's nonces under GODEBUG=fips140=only", ErrUnsupported)
}

// fipsMinHMACKey is the shortest HMAC key, in bytes, the FIPS 140-only mode
// allows: 112 bits.
const fipsMinHMACKey = 14

// errShortHMACKey is MAC's error for a key crypto/hmac would refuse in the
// FIPS 140-only mode. Made beforehand: MAC's callback may run pinned.
var errShortHMACKey = fmt.Errorf("%w: HMAC key shorter than 112 bits under GODEBUG=fips140=only", ErrInvalidKey)

// macRefused reports whether the FIPS 140-only mode forbids an HMAC with
// the hashes of h: crypto/hmac refuses, by panicking, hashes other than
// SHA-2 and SHA-3 there. MAC computes HMAC itself, so it asks crypto/hmac
// with a key of zeros, not the entry's. A panic of h's own goes on, for
// MAC to report as ErrPanicked.
func macRefused(h func() hash.Hash) (err error) {
	if !fips140.Enforced() {
		return nil
	}
	defer func() {
		if p := recover(); p != nil {
			if msg, ok := p.(string); ok && strings.HasPrefix(msg, "crypto/hmac: ") && strings.Contains(msg, "FIPS 140-only mode") {
				err = fmt.Errorf("%w: %s", ErrUnsupported, msg)
				return
			}
			panic(p)
		}
	}()
	hmac.New(h, make([]byte, fipsMinHMACKey))
	return nil
}
