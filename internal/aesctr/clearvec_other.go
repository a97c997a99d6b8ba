//go:build !amd64 && !arm64

package aesctr

// ClearVectors does nothing here: this package has no assembly for this
// architecture to clear its vector registers with.
func ClearVectors() {}

// VectorsForTest reads nothing off arm64 and reports false.
func VectorsForTest(dst *[512]byte) bool { return false }
