//go:build race

package aesctr

// raceEnabled reports whether the race detector is on; it adds allocations
// of its own, so allocation counts are skipped.
const raceEnabled = true
