//go:build race

package memshuffle

// raceBuild reports a -race build, whose slowdown breaks the timing that a
// few tests of process-wide counters rely on. The single-goroutine model
// tests of the engine skip themselves there too: the race detector has
// nothing to find in them, and it makes their invariant check after every
// step take several times as long.
const raceBuild = true
