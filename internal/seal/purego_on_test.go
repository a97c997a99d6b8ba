//go:build purego

package seal

// pureGo is whether the build has the purego tag, which takes
// golang.org/x/crypto's ChaCha20-Poly1305 off its assembly onto generic
// code that allocates on every call.
const pureGo = true
