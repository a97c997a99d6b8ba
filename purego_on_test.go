//go:build purego

package memshuffle

// pureGo is whether the build has the purego tag. crypto/aes then expands
// keys in Go, which stores the AES-256-GCM key schedule as native-order
// 32-bit words rather than in the byte order internal/aesctr and the
// assembly use, the layout the forensic scans search for.
const pureGo = true
