package aesctr

// clearVectorsAsm zeroes V0-V31.
//
//go:noescape
func clearVectorsAsm()

// ClearVectors zeroes the vector registers V0-V31. Assembly outside this
// package, such as crypto/aes's GCM, returns with round keys still in
// them, and a signal or a preemption in the Go code that runs next saves
// them in memory the runtime keeps; called right after such a call, it
// leaves nothing for those to save. A signal taken during the call itself
// is not covered.
func ClearVectors() { clearVectorsAsm() }

//go:noescape
func vectorsAsm(dst *[512]byte)

// VectorsForTest stores V0-V31 in dst, for tests that check what code
// left in them. It reports false where it cannot read them (off arm64).
func VectorsForTest(dst *[512]byte) bool {
	vectorsAsm(dst)
	return true
}
