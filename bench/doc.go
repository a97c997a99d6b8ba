// Package bench compares memshuffle with the libraries and primitives its
// users would otherwise reach for: memguard's Enclave and LockedBuffer, a
// plain []byte on the Go heap, two AES-256-CTR passes and a copy. The
// core module's own benchmarks and baselines are in bench_test.go at the
// repository root; run.sh runs both, and the token cache workload of
// `memshuffle cache`.
//
// It is a module of its own so that memguard, gonum/plot and x/perf never
// reach the dependency graph of programs that import memshuffle. The
// benchmarks are in compare_test.go; cmd/footprint measures what holding
// many live secrets costs in memory; cmd/report turns the output of a run
// into BENCHMARKS.md at the repository root; run.sh drives all of it:
//
//	bench/run.sh            # -count 10 (20 minutes or more on 2 cores)
//	COUNT=3 bench/run.sh    # a quicker run
//	QUICK=1 bench/run.sh    # 6 samples of what BENCHMARKS.md's tables read (about 9 minutes)
//
// Importing memguard disables core dumps for the whole process (its core
// package does so in init) and starts a goroutine that re-keys every 500
// ms; both apply to this package's test binary and to the footprint tool's
// children, never to memshuffle's own tests.
package bench
