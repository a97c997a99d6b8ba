package aesctr

// SignalWatch covers a call into assembly outside this package, such as
// crypto/aes's GCM or x/crypto's ChaCha20-Poly1305, that holds key material
// in vector registers: a signal the thread takes during that call makes the
// kernel save those registers in a frame on the thread's signal stack,
// ordinary Go memory that nothing wipes. [WatchSignals] plants the canaries
// of the signal guard (see the package doc) before the call, and [SignalWatch.End]
// zeroes the thread's whole signal stack after it when a frame overwrote one.
//
// Where the canaries cannot be used (off linux/amd64, where their start-up
// check failed, and on a thread whose signal stack the kernel does not
// report as the one the runtime set, which C code can change) a
// SignalWatch does nothing, and such a frame stays until the next signal
// on the thread overwrites it. So does one under [SetSignalGuardForTest]("off"), which
// tests use as the control.
type SignalWatch struct {
	// top is the top of the signal stack holding the canaries, 0 when
	// nothing is watched. One word, not the canaries' two addresses: a
	// two-word value is copied with 16-byte moves that cannot take their
	// data from the two 8-byte stores that wrote it, a stall that cost
	// more than the rest of the watch.
	top uintptr
}

// WatchSignals starts watching the calling thread's signal stack and locks
// the goroutine to the thread until [SignalWatch.End], so that every signal
// taken meanwhile lands on that stack. The caller calls End on the same
// goroutine, after clearing the registers that held secrets ([ClearVectors]),
// so that a signal taken between the foreign call and the clear is caught
// too.
func WatchSignals() SignalWatch { return watchSignals() }

// End stops watching, wipes the signal stack if a signal frame landed on it
// since [WatchSignals], and unlocks the goroutine from its thread. It is
// called exactly once per watch, even when the watched call panics (defer
// it). Watches may nest, and this package's guarded routines may run
// inside one (the watched code may be a caller's, which calls back into
// the library): they plant the same canaries again, which erases that
// sign of a frame that landed earlier in the watch, but not the word the
// kernel ends the frame's FPU state with, which End checks too.
func (w SignalWatch) End() {
	if w.top != 0 {
		w.end()
	}
}

// SignalProbeForTest stands in, for tests of code that uses [WatchSignals],
// for foreign assembly holding a secret in vector registers: it loads
// marker into X0-X13, sends SIGURG to its own thread, which the kernel
// delivers at once and so saves the marker in a frame on the thread's
// signal stack, and clears the registers, all with no guard of its own.
// It reports false, and does nothing, where the canaries cannot be used.
// Only tests call it.
func SignalProbeForTest(marker *[16]byte) bool { return signalProbe(marker) }
