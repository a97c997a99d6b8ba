package memshuffle

import "syscall"

// threadCPU returns the CPU time, in nanoseconds, the calling thread has
// used. On a machine shared with other work, CPU time varies far less than
// elapsed time, so the shuffle benchmarks report it next to ns/op.
func threadCPU() int64 {
	const rusageThread = 1 // RUSAGE_THREAD
	var ru syscall.Rusage
	if syscall.Getrusage(rusageThread, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
