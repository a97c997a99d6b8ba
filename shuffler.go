package memshuffle

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/ctr"
	"github.com/memshuffle/memshuffle/internal/lock"
	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/seal"
	"github.com/memshuffle/memshuffle/internal/store"
)

// MaxEntrySize is the largest entry, in bytes, a Shuffler holds: 2 GiB - 1,
// which fits an int on every platform. With an authenticated cipher on a
// 32-bit platform the largest is 16 bytes less, so that the entry and its
// tag fit an int: a larger one fails with ErrInvalidSize.
const MaxEntrySize = 1<<31 - 1

// Shuffler holds entries encrypted at rest in arenas mapped outside the Go
// heap, hands out Handles to them, and moves them around on Shuffle. Make one
// with New and release it with Close. All methods are safe for concurrent use
// by many goroutines. Use it through the pointer New returns: a copy of the
// struct (which go vet reports) is not a Shuffler, and every call on it
// acts as on a closed one.
type Shuffler struct {
	self   *Shuffler // set by New; a copy of the struct (which go vet flags) points elsewhere
	id     uint64
	shards []shard
	rr     atomic.Uint32 // hands out shard-choice streams, see pickShard
	hints  sync.Pool     // of *shardHint, one per P in the common case
	stride uint32        // GOMAXPROCS when New ran, at most half the shard count
	closed atomic.Bool

	// replayShard, when a test sets it before the Shuffler is shared, picks
	// every new entry's shard in place of hints, at the cost of one load
	// and branch in pickShard. The Pool's streams follow the processor the
	// caller runs on and vanish at a GC, and the race detector drops a
	// quarter of Puts at random: the same operations then put entries in
	// other shards, with other arena layouts, and a failing sequence of
	// operations would not fail again.
	replayShard func() uint32

	onReturn atomic.Bool

	// closeMu orders Close and Purge with what they undo: the start and
	// stop of the background shuffler and of rent tracking, and a
	// rotation's switch to new keys and its wipe of the old ones.
	closeMu sync.Mutex
	ctrs    *ctr.Allocator
	cfg     config
	own     *osmem.Region // keys, round keys and scratch; see ownState

	// The own region's locked, unlocked and dumpable bytes, for Stats: counted until
	// Close unmaps it, after Purge too, which leaves it mapped.
	ownLocked, ownUnlocked, ownDumpable atomic.Int64

	// Regions that are not arenas (AEAD backups, the background shuffler's
	// spares, released arenas waiting to be unmapped) are counted here, so
	// that Stats.LockedBytes matches what the system has locked.
	aux        store.Aux
	cipherSlot int  // which cipherState the shards' cipher uses
	released   bool // Close has unmapped everything

	lockLogged atomic.Bool // the first refused lock has been logged
	tally      tally       // event counts, for Stats
	out        outbox      // events raised under a shard lock, for flushLog

	stopWatch, watchDone chan struct{}      // the rent-tracking goroutine
	bgCancel             context.CancelFunc // the background shuffler, under closeMu
	bgDone               chan struct{}

	rotator rotator // RotateKey and WithKeyRotation
}

// lockOpen locks the shard and reports true or, when Close has closed it,
// leaves it unlocked and reports false.
func (sh *shard) lockOpen() bool {
	sh.mu.Lock()
	if sh.closed {
		sh.mu.Unlock()
		return false
	}
	return true
}

// shard is an independent part of a Shuffler: its own lock, slot table and
// arenas. An entry lives in one shard for its whole life, so operations on
// entries of different shards never wait for each other.
type shard struct {
	mu     lock.Mutex
	s      *Shuffler
	index  uint32
	closed bool
	purged bool // wiped by Purge; arenas still mapped until Close
	ciph   seal.Cipher

	// While a rotation goes through the shard, ciph is already the new
	// cipher and rot.prev the old one, for entries encrypted before it.
	rot shardRotation

	ctrNext, ctrEnd uint64 // this shard's reserved run of counter values

	// refusedAt is s.aux.Freed()+1 when the system last refused the
	// shard's Alloc memory, 0 before any refusal: see Shuffler.alloc.
	refusedAt uint64

	// lockedFirst: under LockBestEffort, the system would not lock the
	// shard's last new arena and another shard had locked room, so the
	// shard's Allocs that need an arena take such room first, until none
	// is left (see lockedRoomElsewhere).
	lockedFirst bool

	rents   map[Handle]rentRecord // with rent tracking: where each rent began
	scratch *seal.Scratch
	backup  *osmem.Region // AEAD modes: the ciphertext Rent restores on ErrTampered (see mapBackup)

	// The storage engine: slots, arenas, counts, deadlines and waiters.
	// Like every field here, it is guarded by mu.
	store.Shard

	// Pinned borrows in progress (Borrow functions, fills), and the regions
	// Close left mapped for them: the last to end unmaps these.
	pins    int
	orphans []*osmem.Region

	flight flight // entries encrypted or decrypted with mu let go

	rng     *mrand.Rand
	bgOrder []uint32 // this background cycle's order of slots
	bgPos   int
	work    shuffleWork
	regions *handOver // during Shuffle: regions emptied by the shard before this one

	_ [64]byte // keep neighbouring shards' locks off one cache line
}

// New returns a Shuffler with a fresh random key and salt. Call Close when
// done with it: until then it stays registered for PurgeAll, which keeps it
// from being garbage collected, so a Shuffler dropped without Close lives,
// with its memory mapped, until the process exits, and PurgeAll, SafeExit,
// SafePanic and PurgeAllOnSignal still wipe it.
//
// An option value out of range fails with ErrInvalidOption, and so does a
// nil Option, or a value of the caller's that embeds a nil Option. A
// cipher the process's crypto policy forbids (see WithCipher) fails with
// ErrUnsupported.
func New(opts ...Option) (*Shuffler, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil Option", ErrInvalidOption)
		}
		if err := applyOption(o, &cfg); err != nil {
			return nil, err
		}
	}
	cfg.arenaSize = fitArenaToLimit(cfg)
	var seed [16]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	lock.Enable() // before the first shard lock is used
	mapInbox()    // before CopyFrom or RotateKey can be called
	s := &Shuffler{cfg: cfg, shards: make([]shard, cfg.shards)}
	s.self = s
	s.id = binary.LittleEndian.Uint64(seed[:8]) | 1
	// Starting the counter space at a random point below 2^62 keeps two
	// Shufflers that a caller gave the same key and salt from sharing counter
	// blocks, and still leaves at least 3*2^62 blocks to use.
	s.ctrs = ctr.NewAllocator(binary.LittleEndian.Uint64(seed[8:]) >> 2)
	s.onReturn.Store(cfg.onReturn)
	// A stride of the shard count would keep each stream on one shard:
	// with as many processors as shards, two streams share a pair instead.
	s.stride = uint32(min(runtime.GOMAXPROCS(0), max(cfg.shards/2, 1)))
	s.hints.New = func() any { return &shardHint{base: s.rr.Add(1) - 1} }

	// One small region holds everything key-related and the shards'
	// keystream scratch, locked and excluded from dumps like the arenas.
	own, err := s.mapRegion(ownScratch + len(s.shards)*scratchStride)
	if err != nil {
		return nil, err
	}
	s.own = own
	// After the first mapping, so that where the system has no secret
	// memory New says so (ErrNoSecretMemory), not that the limit is small.
	if err := arenaFitsLimit(cfg, own); err != nil {
		s.releaseAll()
		return nil, err
	}
	s.ownLocked.Store(store.LockedLen(own))
	s.ownUnlocked.Store(store.UnlockedLen(own))
	s.ownDumpable.Store(store.DumpableLen(own))
	key, salt := s.keyBufs()
	if _, err := rand.Read(key[:]); err != nil {
		s.releaseAll()
		return nil, err
	}
	if _, err := rand.Read(salt[:]); err != nil {
		s.releaseAll()
		return nil, err
	}
	c, err := seal.New(cfg.cipher, key, salt, s.cipherState(0))
	osmem.Wipe(own.Data[:ownState])
	if err != nil {
		s.releaseAll()
		return nil, cipherRefused(Cipher(cfg.cipher), err)
	}
	s.cipherSlot = 0
	s.aux.Released = &s.tally.arenasReleased
	s.aux.IdleCap = len(s.shards)
	for i := range s.shards {
		sh := &s.shards[i]
		sh.s, sh.index, sh.ciph = s, uint32(i), c
		sh.Init(store.Config{
			Overhead: c.Overhead(), MinArena: cfg.arenaSize, Map: s.mapRegion,
			Aux: &s.aux, Moved: &s.tally.bytesMoved, Released: &s.tally.arenasReleased,
			Full: ErrOutOfMemory,
		})
		off := ownScratch + i*scratchStride
		sh.scratch = (*seal.Scratch)(unsafe.Pointer(&own.Data[off]))
		var rs [32]byte
		if _, err := rand.Read(rs[:]); err != nil {
			s.releaseAll()
			return nil, err
		}
		sh.rng = mrand.New(mrand.NewChaCha8(rs))
	}
	store.RegisterIdle(&s.aux)
	if cfg.trackAfter > 0 {
		s.stopWatch, s.watchDone = make(chan struct{}), make(chan struct{})
		go s.watchRents(s.stopWatch, s.watchDone)
	}
	if cfg.rotateEvery > 0 {
		s.startKeyRotation(cfg.rotateEvery)
	}
	if cfg.background {
		if _, err := s.StartBackgroundShuffle(context.Background(), cfg.bgInterval); err != nil {
			s.Close()
			return nil, err
		}
	}
	register(s)
	// A refused lock of the Shuffler's own region. A handler that ends
	// the goroutine with runtime.Goexit never lets the caller have s: it
	// is closed then, rather than left open, registered and unreachable,
	// with its memory and goroutines.
	s.flushLogUndoing(func() { s.Close() })
	return s, nil
}

// applyOption applies o to cfg. A struct that embeds a nil Option has
// Option's method, and calling it panics; the With functions' own
// options never do, so a panic means such an Option.
func applyOption(o Option, cfg *config) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %T holds no Option: %v", ErrInvalidOption, o, p)
		}
	}()
	return o.apply(cfg)
}

// The layout of the Shuffler's own region: a key and salt buffer, two
// cipher states (the current one, and the next during RotateKey), then each
// shard's keystream scratch on cache lines of its own.
const (
	ownState      = 64
	stateStride   = 256
	ownScratch    = ownState + 2*stateStride
	scratchStride = 192
)

// keyBufs returns the buffer a key and salt are assembled in before they
// are expanded; it is wiped right after.
func (s *Shuffler) keyBufs() (*[32]byte, *[8]byte) {
	d := s.own.Data
	return (*[32]byte)(d[0:32]), (*[8]byte)(d[32:40])
}

// cipherState returns one of the two places round keys live.
func (s *Shuffler) cipherState(i int) *[ctr.StateSize]byte {
	off := ownState + i*stateStride
	return (*[ctr.StateSize]byte)(s.own.Data[off : off+ctr.StateSize])
}

// mapRegion maps n bytes for the Shuffler's own use with its lock mode.
func (s *Shuffler) mapRegion(n int) (*osmem.Region, error) {
	f := osmem.Flags{Lock: s.cfg.lock != LockNone, StrictLock: s.cfg.lock == LockStrict, Secret: s.cfg.secret}
	var r *osmem.Region
	err := store.RetryWithIdle(func() (err error) {
		if r != nil { // mapped, its lock refused: the lock again
			return osmem.Relock(r)
		}
		if r, err = osmem.Map(n, f); err == nil {
			err = r.LockErr
		}
		return err
	})
	if r != nil {
		err = nil // mapped; r.LockErr says whether it stayed unlocked
	}
	if err != nil {
		if errors.Is(err, osmem.ErrNoSecret) {
			if s.own != nil {
				// Secret memory worked for New: this is a refusal of
				// more (fds, mappings, memory), which Alloc's reclaim
				// and the caller's checks for ErrOutOfMemory must see.
				return nil, fmt.Errorf("%w: %w: %w", ErrOutOfMemory, ErrNoSecretMemory, err)
			}
			return nil, fmt.Errorf("%w: %w", ErrNoSecretMemory, err)
		}
		if errors.Is(err, osmem.ErrLock) {
			s.lockFailed(n, err)
			limit := lockLimitText(err)
			if s.cfg.secret {
				limit = secretLimitText()
			}
			return nil, fmt.Errorf("%w: %s: %w", ErrLockFailed, limit, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrOutOfMemory, err)
	}
	if r.LockErr != nil {
		s.lockFailed(n, r.LockErr)
	}
	return r, nil
}

// mapAux maps a region that is not an arena, counted in the Shuffler's
// locked or unlocked bytes until unmapAux.
func (s *Shuffler) mapAux(n int) (*osmem.Region, error) {
	return s.aux.Map(func() (*osmem.Region, error) { return s.mapRegion(n) })
}

// lockFailed counts a refused lock and tells the logger, the first time:
// a Shuffler at its limit would otherwise log at every allocation.
func (s *Shuffler) lockFailed(n int, err error) {
	s.tally.lockFailures.Add(1)
	if s.lockLogged.CompareAndSwap(false, true) {
		// Arenas are mapped under shard locks: the event waits in the
		// outbox.
		s.logLater(slog.LevelWarn, "memshuffle: memory not locked into RAM; Stats.LockFailures counts further refusals",
			slog.Int("bytes", n), slog.Int64("rlimit_memlock", osmem.LockLimit()),
			slog.String("error", err.Error()))
	}
}

// fitArenaToLimit returns the smallest arena size to use: the configured
// one, or, where the process is held to an RLIMIT_MEMLOCK smaller than
// eight default arenas and no WithArenaSize was given, the largest power
// of two up to an eighth of that limit (at least a page). Under a limit
// of 64 KiB, the kernel's default before Linux 5.16, a first arena of 64
// KiB beside the Shuffler's own page could never be locked: LockStrict
// refused every Alloc, even of one byte, and LockBestEffort left every
// entry unlocked.
func fitArenaToLimit(cfg config) int {
	if !cfg.locks() || cfg.arenaSet {
		return cfg.arenaSize
	}
	lim := osmem.BindingLockLimit()
	if lim < 0 || lim/8 >= int64(cfg.arenaSize) {
		return cfg.arenaSize
	}
	// A power of two, as the default is, so that arenas grow by doubling
	// to MaxArenaSize exactly.
	sz := osmem.PageSize()
	for int64(2*sz) <= lim/8 {
		sz *= 2
	}
	return sz
}

// arenaFitsLimit refuses a configuration whose every Alloc would fail:
// under LockStrict or WithSecretMemory a refused lock is an error, and an
// arena of WithArenaSize's size (every arena is at least that) beside own,
// the Shuffler's own region, would not fit in RLIMIT_MEMLOCK even with
// nothing else locked. Left to Alloc, each call would fail with
// ErrLockFailed and New would have said nothing.
func arenaFitsLimit(cfg config, own *osmem.Region) error {
	if !cfg.needsLock() {
		return nil
	}
	lim := osmem.BindingLockLimit()
	page := osmem.PageSize()
	need := int64((cfg.arenaSize+page-1)/page*page + own.LockedLen)
	if cfg.secret {
		// The kernel charges a secret-memory arena's two guard pages to
		// the limit as well (osmem's mapSecret); without them, sizes up to
		// two pages too large passed here and failed every Alloc.
		need += int64(2 * page)
	}
	if lim < 0 || need <= lim {
		return nil
	}
	way := ", or use LockBestEffort"
	if cfg.secret {
		way = ""
	}
	return fmt.Errorf("%w: one arena of WithArenaSize(%d) and the Shuffler's own memory take %d bytes, more than the process may lock, so no Alloc could succeed: %s",
		ErrLockFailed, cfg.arenaSize, need, limitText(way+", or a smaller WithArenaSize"))
}

// lockLimitText says which limit the refused lock err ran into and how to
// raise it, or, where the system refuses locks whatever the limit, says so.
func lockLimitText(err error) string {
	if errors.Is(err, osmem.ErrLockForbidden) {
		return "the system refuses mlock whatever RLIMIT_MEMLOCK, as a system call filter that does not allow it does; use LockBestEffort"
	}
	return limitText(", or use LockBestEffort")
}

// secretLimitText is lockLimitText for secret memory, which the kernel
// locks whatever the LockMode: LockBestEffort would not help.
func secretLimitText() string {
	return limitText("; secret memory is always locked, whatever the LockMode")
}

func limitText(way string) string {
	lim := osmem.LockLimit()
	if lim < 0 {
		return "the system would not lock more memory"
	}
	return fmt.Sprintf("RLIMIT_MEMLOCK is %d bytes (%d KiB; raise it with `ulimit -l` or LimitMEMLOCK= in a systemd unit%s)", lim, lim>>10, way)
}

// releaseAll wipes and unmaps the Shuffler's own region.
func (s *Shuffler) releaseAll() {
	if s.own != nil {
		osmem.Wipe(s.own.Data)
		// Through the Aux, which counts a region out before the munmap
		// (Aux.unmap says why) and keeps a refused one, counted, for
		// Retry: counted out only after, the region stayed in
		// Stats.LockedBytes for a while after the system had let it go.
		s.ownLocked.Store(0)
		s.ownUnlocked.Store(0)
		s.ownDumpable.Store(0)
		s.aux.Add(s.own, 1)
		_ = s.aux.Unmap(s.own)
		s.own = nil
	}
}

// Close wipes every entry, rented or not, and returns all memory to the
// operating system. Pointers and slices from Rent become invalid: using one
// faults. Close is idempotent, and so is Purge after it; every other call
// afterwards returns ErrClosed.
//
// Close never waits for, and never faults, a Borrow function, ReadFrom,
// CopyFrom, ReadAll, ReadUntil or WriteTo running at the same time, even
// when called from inside the function: the memory of a shard such a
// function is using is wiped at once but stays mapped until the function
// returns; then what it wrote since is wiped, the memory unmapped, and the
// function's caller gets ErrClosed. It does wait for the encryption or
// decryption of an entry of 16 KiB or more that runs with its shard let go
// (in every cipher), about 2.5 ms per 16 MiB here in the default one: the
// keys and the memory it uses are what Close takes away. It also waits for
// the Shuffler's own goroutines (the background shuffler, scheduled
// rotation, rent tracking) and the one that hands the background
// shuffler's events to the WithLogger handler, so that none of them is in
// the handler after Close returns: a handler that waits for Close to
// return waits for ever. A call of the program's own running meanwhile
// may still be handing events over.
//
// Close's only error is the system's refusal to unmap memory, which does
// not happen to a correct call: the memory is wiped before it is unmapped,
// stays counted in Stats, and a later Close tries again.
func (s *Shuffler) Close() error {
	if !s.made() {
		return nil
	}
	// Both before closeMu: a rotation takes it, and so does a Purge that a
	// logger called by either goroutine may make.
	s.stopKeyRotation()
	s.stopRentWatch()
	// Out of the registry only once wiped: until then PurgeAll (SafeExit,
	// a signal) must still find it, and its Purge waits for closeMu, which
	// is let go while the background shuffler stops.
	defer unregister(s)
	s.flushLog() // what waits, with no lock held yet
	s.closeMu.Lock()
	// The background shuffler's events reach the logger, which may Purge
	// and so take closeMu, from a goroutine of their own: the shuffler and
	// then that goroutine are waited for with closeMu let go. A shuffler
	// started meanwhile is stopped too; none starts once closeMu is held
	// with neither running.
	for {
		if cancel, done := s.bgCancel, s.bgDone; cancel != nil {
			s.closeMu.Unlock()
			cancel()
			<-done
			s.closeMu.Lock()
			if s.bgDone == done {
				s.bgCancel, s.bgDone = nil, nil
			}
			continue
		}
		back := s.out.awayDone()
		if back == nil {
			break
		}
		s.closeMu.Unlock()
		<-back
		s.closeMu.Lock()
	}
	defer s.closeMu.Unlock()
	if s.released {
		// What the system refused to unmap, tried again.
		return s.aux.Retry()
	}
	s.closed.Store(true)
	s.stopBackground()
	var errs []error
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.drainFlight() // its keys and memory are about to go
		sh.closed = true
		for _, a := range sh.Arenas.List() {
			if a == nil {
				continue
			}
			osmem.Wipe(a.Mem[:a.Used])
			// The Aux counts it from here, as the shard's count goes with
			// Reset below, and unmaps it as it unmaps any arena: counted
			// out as the unmap begins, and kept, wiped and counted, for
			// Retry should the system refuse.
			s.aux.Add(a.Reg, 1)
			if sh.pins > 0 {
				// A Borrow function or fill may still write here: unmapping
				// now would fault it. endPinned unmaps after the last one.
				sh.orphans = append(sh.orphans, a.Reg)
			} else if err := s.aux.UnmapArena(a.Reg); err != nil {
				errs = append(errs, err)
			}
		}
		if sh.backup != nil {
			sh.dropBackup()
		}
		sh.rents = nil
		sh.Reset() // waiters retry and see ErrClosed
		sh.mu.Unlock()
	}
	// Wiped when their arenas emptied; a refusal stays for Retry.
	store.UnregisterIdle(&s.aux)
	s.aux.DropIdle(nil)
	s.wipeCiphers()
	s.releaseAll()
	s.released = true
	// Regions the system refused to unmap before, wiped: a last try.
	errs = append(errs, s.aux.Retry())
	return errors.Join(errs...)
}

// stopRentWatch ends the rent-tracking goroutine, if any, and waits for it;
// the caller does not hold closeMu.
func (s *Shuffler) stopRentWatch() {
	s.closeMu.Lock()
	if s.stopWatch != nil { // Purge may have closed it
		close(s.stopWatch)
		s.stopWatch = nil
	}
	s.closeMu.Unlock()
	if s.watchDone != nil {
		<-s.watchDone
	}
}

// shardHint is a stream of shard choices. Kept in a sync.Pool, which keeps
// one per P in the common case, it gives goroutines running on different
// processors disjoint sets of shards: entries allocated on different
// processors then rarely share a lock or a cache line when they are rented.
type shardHint struct{ base, n uint32 }

// hintRun is how many allocations in a row go to one shard before a stream
// moves on, spreading even a single goroutine's entries over its shards.
const hintRun = 16

// pickShard chooses the shard for a new entry: stream k visits the shards
// k, k+stride, k+2*stride, ... (mod the shard count) in runs of hintRun.
func (s *Shuffler) pickShard() *shard {
	if s.replayShard != nil {
		return &s.shards[s.replayShard()&uint32(len(s.shards)-1)]
	}
	h := s.hints.Get().(*shardHint)
	i := (h.base + s.stride*(h.n/hintRun)) & uint32(len(s.shards)-1)
	h.n++
	s.hints.Put(h)
	return &s.shards[i]
}

// made reports whether s is a Shuffler New made, not nil, a zero value or
// a copy of one: each call on anything else acts as on a closed Shuffler.
// A copy shares the original's shards but not its closed flag, so a Close
// of the copy after the original's wiped memory the original had unmapped.
func (s *Shuffler) made() bool { return s != nil && s.self == s }

// lookup validates h and returns its shard, locked, and slot. The caller
// unlocks the shard.
//
// The Shuffler's own closed flag is not read on the way in: Close sets
// every shard's closed flag under that shard's lock and never shrinks
// s.shards or frees a shard, so the test of sh.closed under the lock gives
// the same answer to every lookup that does not race with Close, one load
// and branch cheaper. Only a handle that names no shard reads it, so that
// a closed Shuffler still answers ErrClosed before ErrInvalidHandle.
func (s *Shuffler) lookup(h Handle) (*shard, *store.Slot, error) {
	if !s.made() {
		return nil, nil, ErrClosed
	}
	// As an int, the shard index is compared as the indexing below
	// compares it, so the compiler drops that bounds check.
	k := int(h.shard())
	if h.owner != s.id || k >= len(s.shards) {
		if s.closed.Load() || len(s.shards) == 0 {
			return nil, nil, ErrClosed
		}
		return nil, nil, ErrInvalidHandle
	}
	sh := &s.shards[k]
	i := h.slot()
again:
	// lockOpen written out: it does not inline, and this is every
	// borrow's and return's path.
	sh.mu.Lock()
	if sh.closed {
		sh.mu.Unlock()
		return nil, nil, ErrClosed
	}
	if i >= sh.Slots.Len() {
		sh.mu.Unlock()
		return nil, nil, ErrInvalidHandle
	}
	sl := sh.Slots.At(i)
	if sl.State() == store.StateFree || sl.Gen() != h.gen() {
		sh.mu.Unlock()
		return nil, nil, ErrInvalidHandle
	}
	if len(sh.flight.slots) != 0 && sh.awaitFlight(i) {
		goto again
	}
	sh.dueNow(i, sl) // wipes a live entry past its deadline
	return sh, sl, nil
}

// lookupLive is lookup for calls that need a live entry: an expired one
// answers ErrExpired. Return, ReturnView and Free handle expired entries
// themselves.
func (s *Shuffler) lookupLive(h Handle) (*shard, *store.Slot, error) {
	sh, sl, err := s.lookup(h)
	if err != nil {
		return nil, nil, err
	}
	if sh.expired(h.slot(), sl, nil) {
		sh.mu.Unlock()
		return nil, nil, ErrExpired
	}
	return sh, sl, nil
}

// stillLive reports lookupLive's error for h: nil while h's entry lives.
func (s *Shuffler) stillLive(h Handle) error {
	sh, _, err := s.lookupLive(h)
	if err == nil {
		sh.mu.Unlock()
	}
	return err
}

// setAD puts the Handle of slot i, the associated data of the AEAD modes,
// into the shard's scratch.
func (sh *shard) setAD(i uint32, sl *store.Slot) { sh.putAD(sh.scratch, i, sl) }

// putAD puts the Handle of slot i, which holds sl, into scr's associated
// data.
func (sh *shard) putAD(scr *seal.Scratch, i uint32, sl *store.Slot) {
	h := makeHandle(sh.s.id, sh.index, i, sl.Gen())
	binary.BigEndian.PutUint64(scr.AD[:8], h.owner)
	binary.BigEndian.PutUint64(scr.AD[8:], h.id)
}

// reserve takes n counter values from the shard's run, refilling it from the
// Shuffler's allocator in large steps so shards rarely touch the shared one.
func (sh *shard) reserve(n uint64) (uint64, error) {
	if sh.ctrEnd-sh.ctrNext < n {
		const step = 1 << 16
		base, err := sh.s.ctrs.Reserve(max(n, step))
		if err != nil {
			return 0, err
		}
		sh.ctrNext, sh.ctrEnd = base, base+max(n, step)
	}
	b := sh.ctrNext
	sh.ctrNext += n
	return b, nil
}

// dropBackup wipes and unmaps the AEAD backup buffer; the next open that
// needs one maps it again.
func (sh *shard) dropBackup() {
	sh.freeBackup(sh.backup)
	sh.backup = nil
}

// freeBackup wipes and unmaps r, a backup region no longer the shard's
// (nil is nothing to free). It holds nothing between uses; it is wiped all
// the same.
func (sh *shard) freeBackup(r *osmem.Region) {
	if r == nil {
		return
	}
	osmem.Wipe(r.Data)
	if osmem.Unmap(r) != nil {
		// Counted from now on, and tried again by the next Shuffle or
		// Close, as any region the system would not take back.
		sh.s.aux.KeepRefused(r)
	}
}

// mapBackup maps a backup buffer of n bytes (see backupFor): plain
// memory, neither locked nor secret memory whatever the Shuffler's mode,
// and counted in Stats.BackupBytes only. It only ever holds an entry's
// ciphertext, for the moment of one decryption, so it needs neither; and
// it must not need them: when it took locked memory, a Shuffler in an
// authenticated mode whose entries filled the memory-lock limit failed
// nearly every rotation, each shard's buffer refused (as user nobody at
// 8 MiB under LockStrict, 4 of 182 RotateKey calls succeeded), and its
// entries stayed under the old key.
func (s *Shuffler) mapBackup(n int) (*osmem.Region, error) {
	var r *osmem.Region
	err := store.RetryWithIdle(func() (err error) {
		r, err = osmem.Map(n, osmem.Flags{SmallPages: true})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOutOfMemory, err)
	}
	return r, nil
}

// storeMax raises m to v if v is larger.
func storeMax(m *atomic.Int64, v int64) {
	for {
		cur := m.Load()
		if v <= cur || m.CompareAndSwap(cur, v) {
			return
		}
	}
}
