package memscan

import (
	"bytes"
	"crypto/rand"
	"os"
	"runtime"
)

// ScanProcessAfter runs f on a goroutine of its own, then keeps that
// goroutine parked, locked to the thread it ended on, while it scans this
// process for p. No other goroutine runs on that thread meanwhile and takes
// a signal whose frame would overwrite one f left on the thread's signal
// stack, so a test can look for what a signal taken during f saved there.
func ScanProcessAfter(f func(), p *Pattern) ([]Hit, error) {
	ready, release := make(chan struct{}), make(chan struct{})
	go func() {
		f()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		close(ready)
		<-release
	}()
	<-ready
	defer close(release)
	return ScanProcess(os.Getpid(), p)
}

// MarkerLeftAfter fills marker with fresh random bytes, which no earlier
// frame holds, runs f as ScanProcessAfter does, and reports whether two
// adjacent copies of marker are left in the process, as two vector
// registers saved in a signal frame hold it. One copy alone is not
// counted: the scan itself may hold one in a register a signal saved.
func MarkerLeftAfter(marker *[16]byte, f func()) (bool, error) {
	rand.Read(marker[:])
	twice := bytes.Repeat(marker[:], 2)
	p, err := NewPattern(twice)
	clear(twice)
	if err != nil {
		return false, err
	}
	hits, err := ScanProcessAfter(f, p)
	return len(hits) > 0, err
}
