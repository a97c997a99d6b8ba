// Package aesctr is AES-256 in counter mode for memory the Go runtime does not
// manage: the round keys live in a buffer the caller provides (in memshuffle,
// locked mmap memory excluded from core dumps), and the work is done in
// assembly that keeps the key, the round keys and the keystream in registers.
//
// crypto/aes keeps its expanded key on the Go heap, where the garbage
// collector may copy it and nothing wipes it; this package exists so that no
// such copy is ever made.
//
// # Counter blocks
//
// Block j of a call to [XOR] is the 8-byte salt, as given, followed by the
// 64-bit counter value base+j in big-endian order. The caller guarantees that
// base+j does not pass 2^64 for any block it uses, so the low half never
// carries into the salt; under that guarantee the keystream is exactly that of
// crypto/cipher.NewCTR with the initial counter block salt || base, and two
// calls with disjoint counter runs under one key and salt never share a block.
//
// # Threat model
//
// Expand reads the key and writes the round keys with the assembly routine
// alone: no key word, round key or keystream byte is held in a Go variable,
// spilled to a goroutine stack or allocated on the heap, and the XMM registers
// that held them are cleared before each function returns. The assembly is
// never asynchronously preempted (the runtime refuses to stop assembly at an
// arbitrary instruction), so it is never saved by the scheduler either. Two
// copies remain outside this package's control: a signal delivered while the
// assembly runs makes the kernel save the register file, XMM registers
// included, on the thread's signal stack; and a long [XOR] is not preemptible
// at all, so it delays a stop-the-world pause by its run time (about 0.12 ms
// per MiB on a current x86 core).
//
// # Concurrency
//
// The functions keep no state. Round keys may be shared by any number of
// concurrent [XOR] calls; each call needs its own scratch block and dst.
//
// # Platform support
//
// Only amd64 with AES-NI and SSE4.1 is implemented ([Supported]). Elsewhere
// [Expand] fails with an error wrapping [errors.ErrUnsupported], and callers
// must use another cipher layer.
package aesctr

import (
	"errors"
	"fmt"
	"unsafe"
)

// RoundKeysSize is the size of the expanded AES-256 encryption key: 15 round
// keys of 16 bytes.
const RoundKeysSize = 240

// errUnsupported is returned by Expand when the assembly cannot run here.
var errUnsupported = fmt.Errorf("memshuffle: AES-NI with SSE4.1 is not available: %w", errors.ErrUnsupported)

// Supported reports whether the assembly implementation can run on this CPU:
// amd64 with AES-NI and SSE4.1 (and SSSE3, which SSE4.1 implies). It is false
// on every other GOARCH.
func Supported() bool { return supported }

// Expand writes the AES-256 encryption round keys for key into rk. It reads
// key and writes rk only during the call and keeps no reference to either;
// the caller owns both and wipes key when it no longer needs it. rk must not
// be in use by a concurrent [XOR].
//
// Where [Supported] is false it writes nothing and returns an error wrapping
// [errors.ErrUnsupported].
func Expand(rk *[RoundKeysSize]byte, key *[32]byte) error {
	if !supported {
		return errUnsupported
	}
	expandKeyAsm(rk, key)
	return nil
}

// XOR sets dst[i] = src[i] ^ keystream[i], where byte i of the keystream is
// byte i%16 of AES-256 under the round keys rk of counter block i/16, and
// counter block j is salt || big-endian uint64(base+j).
//
// base+j must not pass 2^64 for any block of the call, that is
// base+(len(src)-1)/16 must not overflow: the low 64 bits of the counter
// block never carry into the salt, and past 2^64 the keystream would repeat.
// The caller enforces this; XOR does not check it.
//
// dst and src must have the same length and either be the same slice or not
// overlap at all; XOR panics otherwise. scratch is used for a final partial
// block and is all zero when XOR returns. rk, salt and scratch are used only
// during the call and no reference to them is kept.
//
// XOR must only be called where [Supported] is true; it panics elsewhere.
// It does not allocate.
func XOR(rk *[RoundKeysSize]byte, salt *[8]byte, base uint64, dst, src []byte, scratch *[16]byte) {
	if !supported {
		panic("aesctr: XOR called where Supported() is false")
	}
	if len(dst) != len(src) {
		panic("aesctr: dst and src have different lengths")
	}
	if overlapsInexactly(dst, src) {
		panic("aesctr: dst and src overlap but are not the same slice")
	}
	xorKeyStreamAsm(rk, salt, base, dst, src, scratch)
}

// overlapsInexactly reports whether x and y share memory without starting at
// the same address. Same-start aliasing is fine for XOR, which reads each
// source block before writing the destination block at the same offset; any
// other overlap would make it read bytes it already overwrote.
func overlapsInexactly(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 {
		return false
	}
	xp := uintptr(unsafe.Pointer(unsafe.SliceData(x)))
	yp := uintptr(unsafe.Pointer(unsafe.SliceData(y)))
	return xp != yp && xp < yp+uintptr(len(y)) && yp < xp+uintptr(len(x))
}
