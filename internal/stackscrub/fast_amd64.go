package stackscrub

import "golang.org/x/sys/cpu"

// fast reports that the standard library runs its assembly for AES-GCM,
// SHA-256 and SHA-512 here, on the conditions it picks it on (crypto/
// internal/fips140's aes/gcm, sha256 and sha512), which x/sys/cpu reads
// from GODEBUG as they do: the primitives then stay within fastDepth.
var fast = cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ && cpu.X86.HasSSE41 && cpu.X86.HasSSSE3 &&
	cpu.X86.HasAVX && cpu.X86.HasAVX2 && cpu.X86.HasBMI2

// fastDepth is what Scrub zeroes where fast holds.
const fastDepth = 2048
