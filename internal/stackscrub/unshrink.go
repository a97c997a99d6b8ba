package stackscrub

import "runtime"

// A garbage collection may shrink the stack of a goroutine stopped at a
// safe point or parked: when the goroutine uses less than a quarter of
// its stack, the runtime copies the frames in use to a stack half the
// size and frees the old one as it is, with whatever the calls that had
// returned left below the frames in use. A Scrub after the call then
// zeroes the new stack, not the freed one. Code that may park (a
// caller's hash or reader, a lock) or stop at a safe point with key
// material in the dead frames below it must run where a quarter of the
// stack is always in use.

// Anchor is how much stack OnFreshStack holds above the function it
// runs. With Anchor bytes in use above f, and the stack grown only as far
// as f's calls need (DeepDepth and some frames), a quarter of it is always
// in use: for a goroutine that starts with a stack of 128 KiB or less,
// which the runtime's starting size (the average stack in use, rounded
// up) is unless the program's goroutines average more than that.
const Anchor = 32 << 10

// OnFreshStack runs f on a new goroutine whose stack no collection
// shrinks while f runs, and waits for it. A panic in f goes on in the
// caller, with the same value; a runtime.Goexit in f ends the caller's
// goroutine too, after f's deferred calls have run on the new one. Code
// that may park (a caller's hash or reader, a lock) or reach a safe
// point with key material in the dead frames below it runs there, so
// that a Scrub in f reaches every frame it used.
func OnFreshStack(f func()) {
	done := make(chan ending, 1)
	go anchored(f, done)
	e := <-done
	switch {
	case e.exited:
		runtime.Goexit()
	case e.panicked:
		panic(e.value)
	}
}

// ending is how f ended on its goroutine.
type ending struct {
	panicked bool
	exited   bool // runtime.Goexit
	value    any  // the panic's
}

// anchored runs f below a frame of Anchor bytes and reports how it ended.
//
//go:noinline
func anchored(f func(), done chan<- ending) {
	var room [Anchor]byte
	keepAnchor(&room)
	returned := false
	defer func() {
		var e ending
		if !returned {
			// recover is nil during a Goexit, and never for a panic
			// (panic(nil) panics with a *runtime.PanicNilError).
			if e.value = recover(); e.value != nil {
				e.panicked = true
			} else {
				e.exited = true
			}
		}
		done <- e
	}()
	f()
	returned = true
}

//go:noinline
func keepAnchor(*[Anchor]byte) {}
