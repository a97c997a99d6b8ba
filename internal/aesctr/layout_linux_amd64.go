//go:build go1.26 && !go1.27

package aesctr

// Offsets in the runtime's g and m structures (runtime2.go) that guardCanary
// reads from assembly to find the calling thread's signal stack without a
// syscall: g.m, m.gsignal, and the bounds of gsignal's stack, plus three
// fields that check the others (m.procid, the thread id; m.curg, the
// running goroutine) or stop the guard (m.ncgocall, m.id, m.ncgo; m.isextra, set
// on the M of a thread created by C; m.newSigstack, false where the runtime
// adopted a signal stack that C code had set). They are internals of
// the runtime, so they are given for the Go releases they were read from,
// checked against the debug information of the test binary
// (TestRuntimeLayout), and checked at first use against the kernel's view
// of the thread (see verifyCanary); the guard falls back to the others when
// any check fails.
const (
	layoutKnown = true

	offGM        = 48  // g.m
	offGStackLo  = 0   // g.stack.lo
	offGStackHi  = 8   // g.stack.hi
	offMProcid   = 64  // m.procid
	offMGsignal  = 72  // m.gsignal
	offMCurg     = 184 // m.curg
	offMID       = 232 // m.id
	offMNcgocall = 320 // m.ncgocall
	offMNcgo     = 328 // m.ncgo, an int32

	offMNewSigstack = 278 // m.newSigstack
	offMIsextra     = 281 // m.isextra
)
