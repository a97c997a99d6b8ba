//go:build race

package stackscrub

// raceBuild reports a -race build, whose instrumentation gives the
// primitives' generic Go code frames of other sizes than a program's.
const raceBuild = true
