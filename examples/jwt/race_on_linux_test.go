//go:build race

package main

// raceBuild reports a -race build: the race detector's own allocations make
// the copy counts of TestKeyCopies move between two scans.
const raceBuild = true
