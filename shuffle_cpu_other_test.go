//go:build !linux

package memshuffle

// threadCPU is not measured here: the benchmarks report zero.
func threadCPU() int64 { return 0 }
