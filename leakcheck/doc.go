// Package leakcheck proves, with go.uber.org/goleak, that no goroutine a
// Shuffler starts outlives it. It is a module of its own so that the core
// module's users never download goleak.
package leakcheck
