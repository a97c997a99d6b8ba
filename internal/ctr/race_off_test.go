//go:build !race

package ctr

// raceEnabled reports whether the race detector is on; it adds allocations
// of its own, so allocation counts are skipped.
const raceEnabled = false
