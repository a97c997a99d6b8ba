package memshuffle

import (
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/memshuffle/memshuffle/internal/seal"
)

// Option configures a Shuffler made by New.
type Option interface{ apply(*config) error }

type optionFunc func(*config) error

func (f optionFunc) apply(c *config) error { return f(c) }

// LockMode says what a Shuffler does about locking its arenas into RAM.
type LockMode int

const (
	// LockBestEffort locks every arena with mlock and, when the system
	// refuses (RLIMIT_MEMLOCK, for one), keeps working with unlocked memory
	// and counts it in Stats. This is the default. Before Alloc keeps an
	// arena the system would not lock, it gives back the emptied arenas
	// that a peak left larger than their shards now map, if they are
	// locked, and locks the arena if that made room; if not, the entry
	// goes into room another shard whose arenas are all locked has, when
	// one has, and the arena is given back. It gives back less than a
	// refusal under LockStrict does: other emptied arenas stay, so that
	// entries which come and go at the limit do not map and unmap arenas
	// each time.
	LockBestEffort LockMode = iota
	// LockStrict makes a refused lock an error: the allocation that needed
	// the memory fails with ErrLockFailed and nothing changes.
	LockStrict
	// LockNone never locks. Memory may then be written to swap, encrypted.
	LockNone
)

type config struct {
	shards    int
	arenaSize int
	arenaSet  bool // WithArenaSize was given
	lock      LockMode
	onReturn  bool
	secret    bool
	cipher    seal.Mode

	trackAfter time.Duration // WithRentTracking
	ttl        time.Duration // WithDefaultTTL
	now        func() int64  // the clock expiries are kept on, Unix ns; nil for the system's (tests set another)
	background bool          // WithBackgroundShuffle
	bgInterval time.Duration
	logger     *slog.Logger

	rotateEvery time.Duration // WithKeyRotation
}

// locks reports whether the Shuffler's memory counts against
// RLIMIT_MEMLOCK: it locks its arenas, or they are secret memory, which
// the kernel locks whatever the LockMode.
func (c *config) locks() bool { return c.secret || c.lock != LockNone }

// needsLock reports whether a refused lock is an error rather than memory
// left unlocked: secret memory cannot be had unlocked, and LockStrict
// takes none.
func (c *config) needsLock() bool { return c.secret || c.lock == LockStrict }

func defaultConfig() config {
	// Four shards per processor keep two goroutines on different entries
	// from meeting on one lock most of the time.
	n := 1
	for n < 4*runtime.GOMAXPROCS(0) && n < 64 {
		n <<= 1
	}
	return config{shards: n, arenaSize: 64 << 10, lock: LockBestEffort}
}

// WithShards sets the number of independent shards, each with its own lock,
// arenas and slot table: a power of two from 1 to 256. More shards let more
// goroutines rent and return at once. The default is four per GOMAXPROCS,
// rounded up to a power of two, at most 64.
func WithShards(n int) Option {
	return optionFunc(func(c *config) error {
		if n < 1 || n > maxShards || n&(n-1) != 0 {
			return fmt.Errorf("%w: WithShards(%d): want a power of two in [1, %d]", ErrInvalidOption, n, maxShards)
		}
		c.shards = n
		return nil
	})
}

// WithArenaSize sets the smallest arena mapped from the operating system, in
// bytes, rounded up to whole pages: from 4 KiB to 1 GiB. Arenas grow beyond it
// as a shard holds more data. The default is 64 KiB, or, for a process held to
// a memory-lock limit (RLIMIT_MEMLOCK) under 512 KiB with a lock mode that
// locks or with WithSecretMemory, the largest power of two up to an eighth of
// that limit, so that arenas fit in it: a 64 KiB arena never fits beside the
// Shuffler's own page under the 64 KiB limit that kernels before 5.16 set by
// default. A size given here is kept as given: under LockStrict or with
// WithSecretMemory, where a refused lock fails the Alloc, New fails with
// ErrLockFailed if one such arena beside the Shuffler's own memory would
// not fit in the limit, since then no Alloc could succeed.
func WithArenaSize(n int) Option {
	return optionFunc(func(c *config) error {
		if n < 4<<10 || n > 1<<30 {
			return fmt.Errorf("%w: WithArenaSize(%d): want [4096, 1<<30]", ErrInvalidOption, n)
		}
		c.arenaSize, c.arenaSet = n, true
		return nil
	})
}

// WithLockMode sets what the Shuffler does about locking arenas into RAM.
func WithLockMode(m LockMode) Option {
	return optionFunc(func(c *config) error {
		if m < LockBestEffort || m > LockNone {
			return fmt.Errorf("%w: WithLockMode(%d)", ErrInvalidOption, int(m))
		}
		c.lock = m
		return nil
	})
}

// WithShuffleOnBorrowReturn starts the Shuffler with shuffle-on-borrow-return
// enabled; see [Shuffler.SetShuffleOnBorrowReturn].
func WithShuffleOnBorrowReturn(enable bool) Option {
	return optionFunc(func(c *config) error {
		c.onReturn = enable
		return nil
	})
}

// WithSecretMemory backs every arena, and the Shuffler's key and scratch
// pages, with memfd_secret(2) (Linux 5.14 and later, when enabled by the
// kernel): the pages leave the kernel's direct map, so the kernel itself
// cannot read them through it, reading them through /proc/PID/mem fails,
// and they are never swapped (the kernel's documented behaviour; checked
// by hand, not by a test: SECURITY.md). New fails with ErrNoSecretMemory where the
// system refuses. Secret memory counts against RLIMIT_MEMLOCK, and the
// kernel locks it whatever the LockMode: where the limit refuses it, the
// call that needed it fails with ErrLockFailed, under LockBestEffort and
// LockNone too.
func WithSecretMemory() Option {
	return optionFunc(func(c *config) error {
		c.secret = true
		return nil
	})
}

// Cipher selects how a Shuffler encrypts entries at rest.
type Cipher int

const (
	// AES256CTR is AES-256 in counter mode: the fastest, and with AES-NI on
	// amd64 its key schedule stays off the Go heap. It is not authenticated:
	// a byte changed at rest decrypts to a changed byte, undetected.
	AES256CTR Cipher = iota
	// AES256GCM authenticates every entry, bound to its Handle: any change
	// to an entry's bytes or tag at rest, or ciphertext copied from another
	// entry, makes Rent and View fail with ErrTampered. Its key schedule is
	// crypto/aes's, on the Go heap. Each entry takes 16 more bytes.
	AES256GCM
	// ChaCha20Poly1305 authenticates like AES256GCM, with
	// golang.org/x/crypto's ChaCha20-Poly1305, for CPUs without AES
	// instructions. Its key is on the Go heap. Each entry takes 16 more
	// bytes.
	ChaCha20Poly1305
)

// String names the cipher as the documentation does ("AES-256-CTR", say),
// for logs and error messages; a value that is none of the constants reads
// as Cipher(N).
func (c Cipher) String() string {
	if c < AES256CTR || c > ChaCha20Poly1305 {
		return fmt.Sprintf("Cipher(%d)", int(c))
	}
	return seal.Mode(c).String()
}

// WithCipher selects the cipher entries are encrypted with; the default is
// AES256CTR. Under GODEBUG=fips140=only, New refuses AES256GCM and
// ChaCha20Poly1305 with ErrUnsupported: crypto/cipher builds no GCM for
// the Shuffler's counter-derived nonces there, and x/crypto no
// ChaCha20-Poly1305 at all.
func WithCipher(c Cipher) Option {
	return optionFunc(func(cfg *config) error {
		if c < AES256CTR || c > ChaCha20Poly1305 {
			return fmt.Errorf("%w: WithCipher(%d)", ErrInvalidOption, int(c))
		}
		cfg.cipher = seal.Mode(c)
		return nil
	})
}

// WithKeyRotation rotates the key in the background, as RotateKey(nil, nil)
// does, every interval from the end of one rotation to the start of the
// next, until Close or Purge. Entries are re-encrypted in batches of at
// most 64 KiB (or one larger entry), each under its shard's lock: a Rent or
// Return waits at most for one batch, never for a whole shard or the whole
// rotation. Like the background shuffler (see StartBackgroundShuffle), a
// scheduled rotation sleeps after every 100 µs of work, counted across
// rotations (the wait between two counts as rest only for its length), so
// it takes a small share of one CPU and callers keep theirs (at an
// interval of a microsecond, over one entry, 0.30 and 0.36 of one CPU in
// two runs of TestScheduledWorkRestsAtTinyIntervals, which fails above
// 0.6, and over 1 MiB 0.10-0.11, resting about as long as it works); on
// the two-core machine of BENCHMARKS.md it re-encrypts about 150 MiB a
// second while a caller runs Rent and Return flat out (1.70 s a rotation
// of 256 MiB, ±29%, the median of the six runs of
// BenchmarkRentReturnDuringKeyRotation there: a run's time over the
// rotations it completes), where RotateKey, which does not rest, does
// about 2.5 GB a second (BenchmarkRotateKey on 256 MiB of 64 KiB entries:
// 107 ms, bench/NOTES.md). Where goroutines keep every processor busy, a
// scheduled rotation's sleeps stretch as the background shuffler's do (see
// StartBackgroundShuffle), and a rotation takes many times as long.
// RotateKey, which does not rest, gets its share of the processors there:
// 65 ms for 16 MiB, against 15 to 18 ms without them
// (BenchmarkRotateKeyBusy, bench/NOTES.md). A rotation that fails (see
// RotateKey) is logged at warning level, counted in
// Stats.KeyRotationsFailed and retried at the next tick. The
// interval must be positive (ErrInvalidOption). Close stops the goroutine
// and waits for it, so a logger that it calls may Purge the Shuffler but
// must not Close it.
func WithKeyRotation(every time.Duration) Option {
	return optionFunc(func(c *config) error {
		if every <= 0 {
			return fmt.Errorf("%w: WithKeyRotation(%v): want a positive interval", ErrInvalidOption, every)
		}
		c.rotateEvery = every
		return nil
	})
}
