//go:build race

package memshuffle

// reviewRaceBuild reports a -race build. The single-goroutine model tests
// of the engine skip themselves there: the race detector has nothing to
// find in them, and it makes their invariant check after every step take
// several times as long.
const reviewRaceBuild = true
