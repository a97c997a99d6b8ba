// Package stackscrub clears what a call into the standard library's or
// x/crypto's primitives leaves of a key on the goroutine's stack.
//
// Their assembly and Go code keep key material in their own frames and
// return without clearing them: crypto/aes's GCM keeps counter blocks
// already XORed with the first round key (for AES-128 the whole key, for
// AES-256 half of it, to anyone who knows the nonce), x/crypto's
// ChaCha20-Poly1305 the key itself, crypto/ed25519 a SHA-512 state holding
// the nonce prefix. The next calls deep enough overwrite those frames, but
// until then a scan of the stack finds them, and a stack that grows is
// copied and the old one freed with them in it.
//
// A caller reserves the room first, then calls the primitive, then scrubs,
// all three from the same frame:
//
//	stackscrub.Reserve()
//	a.Seal(dst, nonce, plain, ad)
//	stackscrub.Scrub()
//
// Reserve grows the stack, if it must, before any key material is written
// (a Go function with as large a frame would also zero it), so that the
// primitive's frames neither land on a stack that is then copied and freed
// nor make Scrub's prologue grow it. Scrub zeroes the region the
// primitive's frames used. Depth and DeepDepth bound how far below the
// caller those frames may reach; TestDepthCoversPrimitives measures the
// primitives this module calls and fails if one goes deeper.
package stackscrub

// Depth is how much of the stack Scrub zeroes below its caller: more than
// GCM's and ChaCha20-Poly1305's Seal and Open (856 bytes at most when
// measured, with crypto/aes's assembly) and HMAC with SHA-256 or SHA-512
// (1,016). Where the hashes have no assembly it is larger (depth_*.go):
// HMAC-SHA512's generic code on 386 went 1,640 bytes deep.
const Depth = depth

// DeepDepth is how much ScrubDeep zeroes: more than the signers' calls
// (when measured: Ed25519 2,576 bytes, ECDSA with P-256 6,192, with P-384
// and P-521 9,176, RSA-2048 9,864).
const DeepDepth = 16384

// Scrub zeroes Depth bytes of the stack just below its caller's frame,
// where the frames of the calls the caller has just returned from were.
//
//go:noinline
func Scrub() {
	var b [Depth]byte // zeroed on entry: that is the scrub
	keep(&b)
}

// ScrubDeep is Scrub for DeepDepth bytes.
//
//go:noinline
func ScrubDeep() {
	var b [DeepDepth]byte
	keepDeep(&b)
}

// keep makes b's zeroing a store the compiler must do.
//
//go:noinline
func keep(b *[Depth]byte) {}

//go:noinline
func keepDeep(b *[DeepDepth]byte) {}
