// Package nopreempt keeps the runtime from preempting a goroutine, or
// stopping it for the garbage collector, while it runs a short stretch of
// code that holds key material in registers.
//
// A preemption saves the goroutine's registers where nothing outside the
// runtime can wipe them: an asynchronous one (the garbage collector's
// stop of every running goroutine, the scheduler's after 10 ms) saves the
// vector registers in the runtime's per-P scratch area and in a block of
// its own; a synchronous one, at a function's prologue, leaves them as
// they are for the next goroutine on the thread, whose own asynchronous
// preemption then saves them. The standard library's AES-GCM runs Go code
// between its assembly routines with round keys in those registers, and
// an AEAD call returns with key material in them until the caller clears
// them, so either kind of preemption inside such a call can keep a copy
// of the key.
//
// [Pin] holds the goroutine on its P the way sync.Pool does, through the
// runtime's procPin, which the runtime keeps open to other packages (see
// go.dev/issue/67401): while pinned, the runtime neither preempts the
// goroutine, asynchronously or at a prologue, nor completes a
// stop-the-world, which waits until [Unpin]. Signals are still delivered,
// so a signal frame may still hold the registers (internal/aesctr's
// SignalWatch covers that). Secret mode (runtime/secret) refuses
// asynchronous preemption by itself; this package serves the default
// build.
//
// The code between Pin and Unpin must be short (every stop-the-world of the
// process waits for it) and must not block: no channel operation, no
// sync.Mutex or other lock that can park the goroutine, no system call
// made through the scheduler (syscall.Syscall, os I/O; raw system calls
// are fine), no call back into code the caller does not control. The
// runtime throws ("schedule: holding locks") if a pinned goroutine parks,
// and ("panic holding locks") if it panics: a panic between Pin and Unpin
// ends the process, recover or not, so the code checks what could make it
// panic before it pins.
// Allocation is allowed: it never parks, and the runtime starts no
// garbage collection cycle and asks for no assist from a pinned
// goroutine.
package nopreempt

import _ "unsafe" // for go:linkname

//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

// Pin keeps the calling goroutine from being preempted, and on its thread,
// until the matching [Unpin]. Pins nest.
func Pin() { procPin() }

// Unpin ends the latest [Pin] of the calling goroutine, on the same
// goroutine.
func Unpin() { procUnpin() }
