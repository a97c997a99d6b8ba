//go:build unix && !linux

package osmem

// mapCountLimit is 0: these systems set no per-process limit on mappings
// that a program meets before it runs out of memory.
func mapCountLimit() int64 { return 0 }
