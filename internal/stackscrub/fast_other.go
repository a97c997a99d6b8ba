//go:build !amd64 && !arm64

package stackscrub

// fast is false: the depths were measured with assembly on amd64 and
// arm64 only, and HMAC-SHA512's generic code on 386 went 1,640 bytes deep.
const fast = false

// fastDepth is unused where fast is false.
const fastDepth = Depth
