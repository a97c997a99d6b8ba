//go:build !amd64 && !arm64

package stackscrub

// depth is Depth where generic Go code computes the hashes, whose frames
// go deeper.
const depth = 3072
