//go:build race

package memshuffle

// raceBuild reports a -race build, whose slowdown breaks the timing that a
// few tests of process-wide counters rely on.
const raceBuild = true
