// Package secretmode runs functions inside runtime/secret's secret.Do where
// the program was built with it (GOEXPERIMENT=runtimesecret on linux/amd64
// or linux/arm64, as of Go 1.26), and calls them plainly elsewhere.
//
// Inside secret.Do the runtime erases the registers and the stack a
// function used when it returns, and refuses to preempt the goroutine
// asynchronously: an asynchronous preemption saves the vector registers in
// the runtime's per-P scratch area and in a block of its own, where key
// material the standard library's assembly left in them would stay until
// the next preemption overwrote it. Outside secret mode, internal/nopreempt
// keeps short calls that cannot park from being preempted at all.
package secretmode
