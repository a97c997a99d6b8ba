package ctr

import "github.com/memshuffle/memshuffle/internal/aesctr"

// ShortMax is the longest input XORShort takes: one assembly call, at
// most asmChunk.
const ShortMax = 64 << 10

// XORShort is XOR for a Cipher whose OffHeap is true and an input of at
// most ShortMax bytes: one call of the assembly, with nothing to decide,
// small enough to inline into the Rent and Return of an entry. Anything
// else must go through XOR; for a Cipher on the crypto/aes fallback,
// XORShort would dereference its nil round keys.
func (c *Cipher) XORShort(dst, src []byte, base uint64, scratch *[ScratchSize]byte) {
	aesctr.XOR(c.rk, c.salt, base, dst, src, (*[16]byte)(scratch[:16]))
}

// XORShortInPlace is XORShort(buf, buf, base, scratch), with the cheaper
// call of the assembly that one slice allows.
func (c *Cipher) XORShortInPlace(buf []byte, base uint64, scratch *[ScratchSize]byte) {
	aesctr.XORInPlace(c.rk, c.salt, base, buf, (*[16]byte)(scratch[:16]))
}
