// Package bench compares memshuffle with the libraries and primitives its
// users would otherwise reach for: memguard's Enclave and LockedBuffer, a
// plain []byte on the Go heap, two AES-256-CTR passes and a copy.
//
// It is a module of its own so that memguard, gonum/plot and x/perf never
// reach the dependency graph of programs that import memshuffle. The
// benchmarks are in compare_test.go; cmd/footprint measures what holding
// many live secrets costs in memory; cmd/report turns the output of a run
// into BENCHMARKS.md at the repository root; run.sh drives all of it:
//
//	bench/run.sh            # -count 10 (about 20 minutes on 2 cores)
//	COUNT=3 bench/run.sh    # a quicker run
//
// Importing memguard disables core dumps for the whole process (its core
// package does so in init) and starts a goroutine that re-keys every 500
// ms; both apply to this package's test binary and to the footprint tool's
// children, never to memshuffle's own tests.
package bench
