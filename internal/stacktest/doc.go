// Package stacktest holds what the tests of the stack zeroing after
// crypto calls (package stackscrub) share: goroutines whose stacks end at
// chosen distances from a call or have grown large, and the blocks
// crypto/aes's GCM leaves in its frames. Tests alone import it.
package stacktest
