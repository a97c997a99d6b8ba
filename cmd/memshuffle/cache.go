package main

import (
	"crypto/subtle"
	"flag"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/memshuffle/memshuffle"
)

const cacheUsage = `Usage: memshuffle cache [flags]

Runs a token cache against a Shuffler: -tokens tokens of 32 to 64 random
bytes, -goroutines goroutines, each operation a lookup (View of the token and
a constant-time compare with the expected value; 90%) or a rotation (Free of
the token and a new one in its place; 10%), for -duration. Every -interval
it prints the operations per second and the Shuffler's live, mapped, locked
and unlocked bytes, its lock failures and the errors seen. The workload never
calls Shuffle.

With -baseline the same work runs on a map[uint32][]byte behind a
sync.RWMutex, for comparison; the memory columns are then zero.

With -check the exit status says whether the run met its targets: no error,
every byte locked (unless -lock none), and at every sample mapped bytes at
most -ratio times the stored bytes plus -slack. The stored bytes are the
live bytes and, with -cipher gcm or chacha, each entry's 16-byte tag. Each
shard maps arenas of its own, of 64 KiB at least, so a few tokens over many
shards take more room than -ratio allows for them: the default -slack, 1 MiB,
covers 16 shards, the default up to four processors. Give -shards, or more
-slack, to check on a machine with more.

Flags:
`

func runCache(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cache", flag.ContinueOnError)
	c := cacheConfig{}
	fs.Int64Var(&c.tokens, "tokens", 100000, "number of tokens")
	fs.IntVar(&c.goroutines, "goroutines", 8, "goroutines doing lookups and rotations")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to run")
	fs.DurationVar(&c.interval, "interval", 100*time.Millisecond, "time between samples")
	fs.Float64Var(&c.rotations, "rotations", 0.10, "fraction of operations that rotate a token")
	lock := fs.String("lock", "strict", "lock mode: strict, besteffort or none")
	cipher := fs.String("cipher", "ctr", "cipher: ctr, gcm or chacha")
	fs.BoolVar(&c.secret, "secret", false, "use secret memory (memfd_secret), WithSecretMemory")
	fs.BoolVar(&c.baseline, "baseline", false, "run on a map[uint32][]byte behind a sync.RWMutex instead")
	fs.BoolVar(&c.check, "check", false, "exit 1 unless the run met its targets")
	fs.BoolVar(&c.quiet, "quiet", false, "print the first line and the summary, not every sample")
	fs.Float64Var(&c.ratio, "ratio", 1.25, "with -check: most mapped bytes per stored byte")
	fs.Int64Var(&c.slack, "slack", 1<<20, "with -check: mapped bytes allowed beyond -ratio times stored")
	fs.IntVar(&c.shards, "shards", 0, "shards of the Shuffler, a power of two up to 256; 0 for the library's default (four per processor, up to 64)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), cacheUsage)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), "\nExit status: 0, 1 when -check found a target missed, 2 for a usage or setup error.\n")
	}
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "memshuffle cache: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if msg := c.invalid(); msg != "" {
		fmt.Fprintf(stderr, "memshuffle cache: %s\n", msg)
		fs.Usage()
		return 2
	}
	mode, ok := cacheLockModes[*lock]
	if !ok {
		fmt.Fprintf(stderr, "memshuffle cache: unknown lock mode %q\n", *lock)
		return 2
	}
	ciph, ok := cacheCiphers[*cipher]
	if !ok {
		fmt.Fprintf(stderr, "memshuffle cache: unknown cipher %q\n", *cipher)
		return 2
	}
	c.lock, c.lockName, c.cipher = mode, *lock, ciph
	res, err := c.run(stdout)
	if err != nil {
		fmt.Fprintln(stderr, "memshuffle cache:", err)
		return 2
	}
	if c.check && len(res.missed) > 0 {
		for _, m := range res.missed {
			fmt.Fprintln(stdout, "target missed:", m)
		}
		return 1
	}
	return 0
}

// The most tokens and goroutines the workload takes. Each token costs
// about 150 bytes of Go heap and entry together and is indexed by a uint32;
// each goroutine a stack. Past these a run would end in the runtime's
// out-of-memory crash, or take longer to set up than anyone would wait,
// rather than measure anything.
const (
	maxCacheTokens     = 1 << 24
	maxCacheGoroutines = 1 << 12
	maxCacheShards     = 256 // WithShards' most
)

// invalid says what is wrong with the flags, naming the first flag out of
// range, or returns "". NaN fails every comparison, so each check is
// written to fail for it.
func (c *cacheConfig) invalid() string {
	switch {
	case c.tokens < 1 || c.tokens > maxCacheTokens:
		return fmt.Sprintf("-tokens %d: want 1 to %d", c.tokens, maxCacheTokens)
	case c.goroutines < 1 || c.goroutines > maxCacheGoroutines:
		return fmt.Sprintf("-goroutines %d: want 1 to %d", c.goroutines, maxCacheGoroutines)
	case c.duration <= 0:
		return fmt.Sprintf("-duration %v: want a positive duration", c.duration)
	case c.interval <= 0:
		return fmt.Sprintf("-interval %v: want a positive duration", c.interval)
	case !(c.rotations >= 0 && c.rotations <= 1):
		return fmt.Sprintf("-rotations %v: want a fraction from 0 to 1", c.rotations)
	case !(c.ratio > 0 && c.ratio <= math.MaxFloat64):
		return fmt.Sprintf("-ratio %v: want a positive, finite number", c.ratio)
	case c.slack < 0:
		return fmt.Sprintf("-slack %d: want 0 or more bytes", c.slack)
	case c.shards < 0 || c.shards > maxCacheShards || c.shards&(c.shards-1) != 0:
		return fmt.Sprintf("-shards %d: want 0 for the default, or a power of two from 1 to %d", c.shards, maxCacheShards)
	}
	return ""
}

// cacheLockModes and cacheCiphers are the values -lock and -cipher take.
var (
	cacheLockModes = map[string]memshuffle.LockMode{
		"strict":     memshuffle.LockStrict,
		"besteffort": memshuffle.LockBestEffort,
		"none":       memshuffle.LockNone,
	}
	cacheCiphers = map[string]memshuffle.Cipher{
		"ctr":    memshuffle.AES256CTR,
		"gcm":    memshuffle.AES256GCM,
		"chacha": memshuffle.ChaCha20Poly1305,
	}
	// cacheTagBytes is what each entry takes beyond its data under a
	// cipher, as the Cipher constants document.
	cacheTagBytes = map[memshuffle.Cipher]int64{
		memshuffle.AES256GCM:        16,
		memshuffle.ChaCha20Poly1305: 16,
	}
)

type cacheConfig struct {
	// tokens is an int64 so that a count past a 32-bit int gets the
	// range check's message, as on 64-bit platforms, not flag's.
	tokens             int64
	goroutines         int
	duration, interval time.Duration
	rotations          float64
	lock               memshuffle.LockMode
	lockName           string // as -lock gave it
	cipher             memshuffle.Cipher
	secret             bool
	baseline           bool
	check, quiet       bool
	ratio              float64
	slack              int64
	shards             int // 0: the library's default
}

// tokenStore is what the workload runs on: a Shuffler, or the baseline map.
type tokenStore interface {
	// put stores token i, replacing the one before it, if any.
	put(i uint32, tok []byte) error
	// match reports whether token i equals want, in constant time.
	match(i uint32, want []byte) (bool, error)
	stats() memshuffle.Stats
	close() error
}

// shufflerStore keeps each token in an entry of s. Handles sit in a table
// whose stripes of locks keep a lookup from viewing a token that a rotation
// is freeing; lookups of different stripes never meet.
type shufflerStore struct {
	s       *memshuffle.Shuffler
	mu      [4096]sync.RWMutex
	handles []memshuffle.Handle
}

func (st *shufflerStore) put(i uint32, tok []byte) error {
	mu := &st.mu[i%uint32(len(st.mu))]
	mu.Lock()
	defer mu.Unlock()
	if old := st.handles[i]; !old.IsZero() {
		if err := st.s.Free(old); err != nil {
			return fmt.Errorf("free: %w", err)
		}
		st.handles[i] = memshuffle.Handle{}
	}
	h, err := memshuffle.CopyFrom(st.s, tok)
	if err != nil {
		return fmt.Errorf("alloc: %w", err)
	}
	st.handles[i] = h
	return nil
}

func (st *shufflerStore) match(i uint32, want []byte) (bool, error) {
	mu := &st.mu[i%uint32(len(st.mu))]
	mu.RLock()
	defer mu.RUnlock()
	h := st.handles[i]
	b, err := memshuffle.ViewSlice[byte](st.s, h)
	if err != nil {
		return false, fmt.Errorf("view: %w", err)
	}
	ok := subtle.ConstantTimeCompare(b, want) == 1
	if err := st.s.ReturnView(h); err != nil {
		return false, fmt.Errorf("return view: %w", err)
	}
	return ok, nil
}

func (st *shufflerStore) stats() memshuffle.Stats { return st.s.Stats() }
func (st *shufflerStore) close() error            { return st.s.Close() }

// mapStore is the baseline: plain []byte values on the Go heap.
type mapStore struct {
	mu sync.RWMutex
	m  map[uint32][]byte
}

func (st *mapStore) put(i uint32, tok []byte) error {
	v := append([]byte(nil), tok...)
	st.mu.Lock()
	st.m[i] = v
	st.mu.Unlock()
	return nil
}

func (st *mapStore) match(i uint32, want []byte) (bool, error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return subtle.ConstantTimeCompare(st.m[i], want) == 1, nil
}

func (st *mapStore) stats() memshuffle.Stats { return memshuffle.Stats{} }
func (st *mapStore) close() error            { return nil }

type cacheResult struct {
	ops    uint64
	errors uint64
	missed []string
}

func (c *cacheConfig) run(out io.Writer) (cacheResult, error) {
	var res cacheResult
	var store tokenStore
	name := "memshuffle"
	if c.baseline {
		name = "map+RWMutex"
		store = &mapStore{m: make(map[uint32][]byte, c.tokens)}
	} else {
		opts := []memshuffle.Option{memshuffle.WithLockMode(c.lock), memshuffle.WithCipher(c.cipher)}
		if c.shards > 0 {
			opts = append(opts, memshuffle.WithShards(c.shards))
		}
		if c.secret {
			opts = append(opts, memshuffle.WithSecretMemory())
		}
		s, err := memshuffle.New(opts...)
		if err != nil {
			return res, err
		}
		store = &shufflerStore{s: s, handles: make([]memshuffle.Handle, c.tokens)}
	}
	defer store.close()

	// want holds what a client would present for each token: the workload
	// needs it to check lookups, and it costs both stores the same.
	want := make([][]byte, c.tokens)
	wantMu := make([]sync.Mutex, 4096)
	rng := mrand.New(mrand.NewPCG(1, 2))
	for i := range want {
		want[i] = newToken(rng)
		if err := store.put(uint32(i), append([]byte(nil), want[i]...)); err != nil {
			return res, fmt.Errorf("token %d: %w", i, err)
		}
	}
	fmt.Fprintf(out, "cache: %s, %d tokens of 32-64 B, %d goroutines, %.0f%% rotations, %v, lock %s, cipher %s, secret memory %v\n",
		name, c.tokens, c.goroutines, c.rotations*100, c.duration, c.lockName, c.cipher, c.secret)

	var ops, errs atomic.Uint64
	var errMu sync.Mutex
	var firstErr error
	fail := func(err error) {
		errs.Add(1)
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := range c.goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := mrand.New(mrand.NewPCG(uint64(g)+10, 3))
			present := make([]byte, 64)
			n := 0
			// Counted in batches, to keep the goroutines off one shared
			// word; what is left of the last batch, at the end.
			defer func() { ops.Add(uint64(n % 64)) }()
			for ; !stop.Load(); n++ {
				i := uint32(r.IntN(int(c.tokens)))
				mu := &wantMu[i%uint32(len(wantMu))]
				if r.Float64() < c.rotations {
					tok := newToken(r)
					mu.Lock()
					err := store.put(i, append([]byte(nil), tok...))
					if err == nil {
						want[i] = tok
					}
					mu.Unlock()
					if err != nil {
						fail(err)
					}
				} else {
					mu.Lock()
					p := present[:copy(present, want[i])]
					mu.Unlock()
					ok, err := store.match(i, p)
					if err != nil {
						fail(err)
					} else if !ok {
						// A rotation may have come between the copy and the
						// lookup; only a mismatch with the current token is an
						// error.
						mu.Lock()
						cur := subtle.ConstantTimeCompare(want[i], p) == 1
						mu.Unlock()
						if cur {
							if ok, err := store.match(i, p); err == nil && !ok {
								fail(fmt.Errorf("token %d does not match", i))
							}
						}
					}
				}
				if n%64 == 63 {
					ops.Add(64)
				}
			}
		}()
	}

	if !c.quiet {
		fmt.Fprintf(out, "%8s %12s %12s %12s %12s %12s %8s %8s %7s\n",
			"time", "ops/s", "live", "mapped", "locked", "unlocked", "lockfail", "errors", "mapped/live")
	}
	start := time.Now()
	prevOps, prevT := uint64(0), start
	var worst float64
	for elapsed := time.Duration(0); elapsed < c.duration; elapsed = time.Since(start) {
		// The last sample comes at -duration, however long -interval is.
		time.Sleep(min(c.interval, c.duration-elapsed))
		now := time.Now()
		o := ops.Load()
		st := store.stats()
		rate := float64(o-prevOps) / now.Sub(prevT).Seconds()
		prevOps, prevT = o, now
		ratio := 0.0
		if st.LiveBytes > 0 {
			ratio = float64(st.MappedBytes) / float64(st.LiveBytes)
		}
		worst = max(worst, ratio)
		if !c.quiet {
			fmt.Fprintf(out, "%8.1f %12.0f %12d %12d %12d %12d %8d %8d %7.2f\n",
				now.Sub(start).Seconds(), rate, st.LiveBytes, st.MappedBytes, st.LockedBytes, st.UnlockedBytes,
				st.LockFailures, errs.Load(), ratio)
		}
		if !c.baseline {
			// The tags are the cipher's, not space lost to packing.
			stored := st.LiveBytes + int64(st.Entries)*cacheTagBytes[c.cipher]
			// In floating point: a -ratio or -slack near the int64 limit
			// overflowed the sum to a negative bound that every sample
			// missed.
			if limit := c.ratio*float64(stored) + float64(c.slack); float64(st.MappedBytes) > limit {
				res.missed = append(res.missed, fmt.Sprintf("at %.1f s: %d bytes mapped for %d stored (%d live), more than %.0f",
					now.Sub(start).Seconds(), st.MappedBytes, stored, st.LiveBytes, limit))
			}
			if c.lock != memshuffle.LockNone && st.UnlockedBytes > 0 {
				res.missed = append(res.missed, fmt.Sprintf("at %.1f s: %d bytes unlocked", now.Sub(start).Seconds(), st.UnlockedBytes))
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	res.ops, res.errors = ops.Load(), errs.Load()
	st := store.stats()
	fmt.Fprintf(out, "summary: %s: %.0f ops/s over %v (%d ops), %d errors, %d lock failures; at the end %d live, %d mapped, %d locked, %d unlocked bytes; worst mapped/live %.2f; lock limit %d\n",
		name, float64(res.ops)/elapsed.Seconds(), elapsed.Round(time.Millisecond), res.ops, res.errors, st.LockFailures,
		st.LiveBytes, st.MappedBytes, st.LockedBytes, st.UnlockedBytes, worst, st.LockLimit)
	if res.errors > 0 {
		res.missed = append(res.missed, fmt.Sprintf("%d errors, the first: %v", res.errors, firstErr))
	}
	runtime.KeepAlive(want)
	return res, nil
}

// newToken returns 32 to 64 random bytes.
func newToken(r *mrand.Rand) []byte {
	b := make([]byte, 32+r.IntN(33))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
