package stackscrub

// A garbage collection may shrink the stack of a goroutine stopped at a
// safe point or parked: when the goroutine uses less than a quarter of
// its stack, the runtime copies the frames in use to a stack half the
// size and frees the old one as it is, with whatever the calls that had
// returned left below the frames in use. A Scrub after the call then
// zeroes the new stack, not the freed one. Code that may park (a
// caller's hash or reader, a lock) or stop at a safe point with key
// material in the dead frames below it must run where a quarter of the
// stack is always in use: Unshrinkable.
