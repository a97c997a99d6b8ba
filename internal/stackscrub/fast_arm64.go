package stackscrub

import "golang.org/x/sys/cpu"

// fast reports that the standard library runs its assembly for AES-GCM,
// SHA-256 and SHA-512 here (see fast_amd64.go).
var fast = cpu.ARM64.HasAES && cpu.ARM64.HasPMULL && cpu.ARM64.HasSHA2 && cpu.ARM64.HasSHA512

// fastDepth is what Scrub zeroes where fast holds.
const fastDepth = 2048
