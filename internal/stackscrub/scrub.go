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

// Depth is the most Scrub zeroes below its caller, and what Reserve makes
// room for. How deep the primitives go depends on the code the standard
// library picks for the CPU: with crypto/aes's and the hashes' assembly,
// GCM's and ChaCha20-Poly1305's Seal and Open went 856 bytes deep when
// measured and HMAC with SHA-256 or SHA-512 1,016, and Scrub zeroes
// fastDepth; without it (no AVX2 or BMI2 on amd64, no SHA-512 instructions
// on arm64, as on a Cortex-A72, or GODEBUG turning them off), HMAC-SHA512's
// generic code went 1,728 bytes deep, GCM's 1,704, and Scrub zeroes Depth.
const Depth = 3072

// Scrub zeroes the stack just below its caller's frame, where the frames
// of the calls the caller has just returned from were: Depth bytes, or
// fastDepth where the CPU runs the primitives' assembly (see fast).
//
// It is set once, before main runs, to the function that zeroes one or
// the other, rather than being a function that calls one: that function's
// own frame would lie between the caller's and the zeroed one, and on
// arm64 it leaves a word unwritten there.
var Scrub = scrubFull

func init() {
	if fast {
		Scrub = scrubFast
	}
}

//go:noinline
func scrubFast() {
	var b [fastDepth]byte // zeroed on entry: that is the scrub
	keepFast(&b)
}

//go:noinline
func scrubFull() {
	var b [Depth]byte
	keep(&b)
}

// DeepDepth is how much ScrubDeep zeroes: more than the signers' calls
// (when measured: Ed25519 2,576 bytes, ECDSA with P-256 6,192, with P-384
// and P-521 9,176, RSA-2048 9,864).
const DeepDepth = 16384

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
func keepFast(b *[fastDepth]byte) {}

//go:noinline
func keepDeep(b *[DeepDepth]byte) {}
