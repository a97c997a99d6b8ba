package aesctr

import "golang.org/x/sys/cpu"

// supported is fixed at start-up: AESENC and AESKEYGENASSIST need AES-NI,
// PINSRQ (building counter blocks) needs SSE4.1, and PSHUFB needs SSSE3,
// which every SSE4.1 CPU has but is checked anyway.
var supported = cpu.X86.HasAES && cpu.X86.HasSSE41 && cpu.X86.HasSSSE3

// expandKeyAsm writes the 15 AES-256 round keys for key into rk, under the
// signal guard guard (guardOff, guardBlock, or guardDetect with threshold
// ticks; see aesctr_amd64.s).
//
//go:noescape
func expandKeyAsm(rk *[RoundKeysSize]byte, key *[32]byte, guard uint8, ticks uint64)

// xorKeyStreamAsm implements XOR once its preconditions are checked: len(dst)
// == len(src), no inexact overlap, and the CPU features present. guard and
// ticks are as for expandKeyAsm.
//
//go:noescape
func xorKeyStreamAsm(rk *[RoundKeysSize]byte, salt *[8]byte, base uint64, dst, src []byte, scratch *[16]byte, guard uint8, ticks uint64)

// copyAsm copies src to the start of dst, which is at least as long and
// does not overlap it. guard and ticks are as for expandKeyAsm.
//
//go:noescape
func copyAsm(dst, src []byte, guard uint8, ticks uint64)

// equalAsm returns 1 if a equals the first len(a) bytes of b, which is at
// least as long, and 0 otherwise, in a time that depends on len(a) alone.
// guard and ticks are as for expandKeyAsm.
//
//go:noescape
func equalAsm(a, b []byte, guard uint8, ticks uint64) int

// syscallTicksAsm returns the fewest time stamp counter ticks any of n > 0
// getppid round trips took.
func syscallTicksAsm(n int) uint64

// invariantTSCAsm reports whether the time stamp counter runs at a constant
// rate whatever the power state of the core.
func invariantTSCAsm() bool

// xor2KeyStreamAsm implements XOR2 once its preconditions are checked.
// guard and ticks are as for expandKeyAsm.
//
//go:noescape
func xor2KeyStreamAsm(rkA *[RoundKeysSize]byte, saltA *[8]byte, baseA uint64, rkB *[RoundKeysSize]byte, saltB *[8]byte, baseB uint64, data []byte, scratch *[16]byte, guard uint8, ticks uint64)

// clearVectorsAsm zeroes the vector registers: with avx, Y0-Y15 whole.
//
//go:noescape
func clearVectorsAsm(avx bool)

// hasAVX says whether the CPU and the system support AVX, whose VZEROALL
// clears the upper halves of Y0-Y15 that an SSE clear would leave.
var hasAVX = cpu.X86.HasAVX

// ClearVectors zeroes the vector registers Go code may use (X0-X15 and, with
// AVX, Y0-Y15). Assembly outside this package, such as crypto/aes's GCM and
// x/crypto's ChaCha20-Poly1305, returns with round keys, key words or
// keystream still in them; the Go code that runs next leaves most of those
// registers alone, and an asynchronous preemption or a signal then saves
// them in memory the runtime keeps (a P's register scratch area, a signal
// frame). Called right after such a call, it leaves nothing for those to
// save. A signal taken during the call itself is not covered.
func ClearVectors() { clearVectorsAsm(hasAVX) }

// VectorsForTest reads nothing on amd64 and reports false: the tests that
// use it check crypto/aes's fallback, which amd64 with AES-NI does not use.
func VectorsForTest(dst *[512]byte) bool { return false }
