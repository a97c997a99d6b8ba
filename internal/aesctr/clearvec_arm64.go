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
