package memshuffle

import (
	"fmt"
	"hash"
)

// MAC appends to dst the HMAC (RFC 2104) of msg under the key held in the
// entry key, with the hash h makes (sha256.New, say), and returns the
// extended slice. The result equals crypto/hmac's for every key length,
// keys longer than the hash's block size included; compare MACs with
// hmac.Equal.
//
// The key is read from a view of the entry, so any number of MACs under
// one key may run at once. Unlike hmac.New, MAC keeps no padded copies of
// the key: the key-derived blocks exist in one buffer of its own, wiped as
// soon as both hashes have absorbed them, and both hashes are reset before
// MAC returns, which overwrites the states derived from the key. In secret
// mode (see SecretMode) all of it runs inside secret.Do. Each call makes
// two hashes; h must return a new one each time, as sha256.New does.
func MAC(s *Shuffler, key Handle, h func() hash.Hash, msg, dst []byte) ([]byte, error) {
	if h == nil {
		return dst, fmt.Errorf("%w: nil hash function", ErrNilArgument)
	}
	err := WithViewSlice(s, key, func(k []byte) error {
		var err error
		dst, err = hmacAppend(h, k, msg, dst)
		return err
	})
	return dst, err
}

// hmacAppend computes HMAC-h(key, msg) and appends it to dst.
func hmacAppend(h func() hash.Hash, key, msg, dst []byte) ([]byte, error) {
	inner, outer := h(), h()
	if inner == nil || outer == nil {
		return dst, fmt.Errorf("%w: hash function returned nil", ErrNilArgument)
	}
	bs := inner.BlockSize()
	if bs <= 0 || outer.BlockSize() != bs {
		return dst, fmt.Errorf("%w: hash block size %d", ErrInvalidSize, bs)
	}
	// pad holds, in turn, the key (or its hash), key XOR ipad, key XOR
	// opad, zeros, and the inner hash. The hashes read full blocks
	// straight from it without buffering them.
	pad := make([]byte, bs, max(bs, inner.Size()))
	defer Wipe(pad[:cap(pad)])
	if len(key) > bs {
		inner.Write(key)
		if sum := inner.Sum(pad[:0]); len(sum) > bs {
			Wipe(sum)
			return dst, fmt.Errorf("%w: hash size %d above block size %d", ErrInvalidSize, len(sum), bs)
		}
		inner.Reset()
	} else {
		copy(pad, key)
	}
	for i := range pad {
		pad[i] ^= 0x36
	}
	inner.Write(pad)
	for i := range pad {
		pad[i] ^= 0x36 ^ 0x5c
	}
	outer.Write(pad)
	Wipe(pad)

	inner.Write(msg)
	outer.Write(inner.Sum(pad[:0]))
	dst = outer.Sum(dst)

	// Reset puts the chaining values back to the initial ones, but leaves
	// a hash's buffer of a partial block as it was: after a long key that
	// is the key's last bytes. Writing a block less one of zeros covers
	// the whole buffer.
	Wipe(pad)
	inner.Reset()
	inner.Write(pad[:bs-1])
	inner.Reset()
	outer.Reset()
	return dst, nil
}
