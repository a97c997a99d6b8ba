//go:build amd64 || arm64

package stackscrub

// depth is Depth where the primitives have assembly; Reserve's frames in
// the assembly files are sized from it.
const depth = 2048
