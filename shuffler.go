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
	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/seal"
	"github.com/memshuffle/memshuffle/internal/store"
)

// MaxEntrySize is the largest entry, in bytes, a Shuffler holds: 2 GiB - 1,
// which fits an int on every platform.
const MaxEntrySize = 1<<31 - 1

// maxArenaSize caps the arenas a shard grows into, so that one long-lived
// entry cannot pin much memory; larger entries get an arena of their own.
const maxArenaSize = 16 << 20

// Shuffler holds entries encrypted at rest in arenas mapped outside the Go
// heap, hands out Handles to them, and moves them around on Shuffle. Make one
// with New and release it with Close. All methods are safe for concurrent use
// by many goroutines.
type Shuffler struct {
	id     uint64
	shards []shard
	rr     atomic.Uint32 // hands out shard-choice streams, see pickShard
	hints  sync.Pool     // of *shardHint, one per P in the common case
	stride uint32        // GOMAXPROCS when New ran, at most the shard count
	closed atomic.Bool

	onReturn               atomic.Bool
	rotateMu               sync.Mutex // one RotateKey at a time
	closeMu                sync.Mutex
	ctrs                   *ctr.Allocator
	cfg                    config
	own                    *osmem.Region // keys, round keys and scratch; see ownState
	ownLocked, ownUnlocked int64
	// Regions that are not arenas (AEAD backups, the background shuffler's
	// spares, released arenas waiting to be unmapped) are counted here, so
	// that Stats.LockedBytes matches what the system has locked.
	auxLocked, auxUnlocked atomic.Int64
	cipherSlot             int  // which cipherState the shards' cipher uses
	released               bool // Close has unmapped everything

	lockLogged     atomic.Bool // the first refused lock has been logged
	shuffles       atomic.Uint64
	arenasReleased atomic.Uint64
	bytesMoved     atomic.Uint64
	shuffleNanos   atomic.Int64
	rotations      atomic.Uint64
	lockFailures   atomic.Uint64
	longRentsSeen  atomic.Uint64
	expired        atomic.Uint64
	tampered       atomic.Uint64
	bgCycles       atomic.Uint64
	bgSteps        atomic.Uint64
	bgStepMax      atomic.Int64
	shuffleMax     atomic.Int64

	stopWatch, watchDone chan struct{}      // the rent-tracking goroutine
	bgCancel             context.CancelFunc // the background shuffler, under closeMu
	bgDone               chan struct{}

	rot     rotation           // a RotateKey left part-way, under rotateMu
	rotHold rotationHolds      // the most one shard-lock hold of a rotation did
	rotStop context.CancelFunc // WithKeyRotation's goroutine, set by New
	rotDone chan struct{}
}

// shard is an independent part of a Shuffler: its own lock, slot table and
// arenas. An entry lives in one shard for its whole life, so operations on
// entries of different shards never wait for each other.
type shard struct {
	mu     sync.Mutex
	s      *Shuffler
	index  uint32
	closed bool
	purged bool // wiped by Purge; arenas still mapped until Close
	ciph   seal.Cipher
	ov     int // bytes of tag after each entry's data (0 for CTR)

	// While a rotation goes through the shard, ciph is already the new
	// cipher and rot.prev the old one, for entries encrypted before it.
	rot shardRotation

	// Pinned borrows in progress (Borrow functions, fills), and the regions
	// Close left mapped for them: the last to end unmaps these.
	pins    int
	orphans []*osmem.Region

	chunks   [][]slot
	nslots   uint32
	freeHead uint32 // index+1 of the first free slot, 0 when none

	arenas     []*arena // by arena index; nil where released
	arenaHoles []uint32
	// cur is where moved entries go, and new ones when free holds no room:
	// its space from cur.top on is not in free. Every other byte of every
	// arena but dedicated ones is in an entry or in free.
	cur  *arena
	free store.FreeSpace

	ctrNext, ctrEnd uint64 // this shard's reserved run of counter values

	wake    chan struct{}         // closed at the next return, when someone waits
	writers map[uint64]int32      // by Handle id: writers waiting for a viewed or rented entry
	exp     expiries              // deadlines, for the entries that have one
	rents   map[Handle]rentRecord // with rent tracking: where each rent began
	cursor  uint32                // next slot the shuffle-on-return sweep looks at
	scratch *seal.Scratch
	backup  *osmem.Region // AEAD modes: the ciphertext Rent restores on ErrTampered
	rng     *mrand.Rand
	bgOrder []uint32      // this background cycle's order of slots
	spare   *osmem.Region // mapped by the background shuffler outside the lock
	bgPos   int
	work    shuffleWork

	live                  int
	rented, viewed        int // entries rented exclusively; entries with a view open
	liveBytes, mapped     int64
	bigBytes              int64 // of liveBytes, in oversize entries, which have arenas of their own
	lockedBytes, unlocked int64
	dumpable              int64

	_ [64]byte // keep neighbouring shards' locks off one cache line
}

// slot is the metadata of one entry. It holds no secret: where the entry is,
// how big, and which run of counter values encrypted it.
type slot struct {
	ctr   uint64 // first counter value of the current encryption
	off   uint32 // offset in the arena; for a free slot, index+1 of the next free slot
	arena uint32
	size  uint32
	meta  uint32 // generation<<8 | state<<4 | log2(alignment)
}

const (
	stateFree    = 0
	stateLive    = 1
	stateRented  = 2 // rented by one borrower, exclusively
	stateViewed  = 3 // viewed by sl.ctr readers
	stateExpired = 4 // wiped at its expiry; the handle answers ErrExpired until freed
)

func (sl *slot) gen() uint32        { return sl.meta >> 8 }
func (sl *slot) state() uint32      { return sl.meta >> 4 & 0xf }
func (sl *slot) align() int         { return 1 << (sl.meta & 0x7) }
func (sl *slot) setState(st uint32) { sl.meta = sl.meta&^0xf0 | st<<4 }

const (
	chunkShift = 12
	chunkSlots = 1 << chunkShift
	maxSlots   = 1<<slotBits - 1
)

func (sh *shard) slot(i uint32) *slot { return &sh.chunks[i>>chunkShift][i&(chunkSlots-1)] }

type arena struct {
	reg   *osmem.Region
	mem   []byte
	used  int // high-water mark: bytes past it have never held an entry
	top   int // bump offset while the arena is the current one
	live  int // entries (live or rented) placed here
	bytes int // bytes those entries take, tags included
	index uint32

	// dedicated marks an arena mapped for one oversize entry: its space is
	// never indexed, so no small entry keeps it mapped after that one goes.
	dedicated bool

	unmapFailed bool // the OS refused to take it back; Shuffle retries
}

// New returns a Shuffler with a fresh random key and salt. Call Close when
// done with it: until then it stays registered for PurgeAll, which keeps it
// from being garbage collected, so a Shuffler dropped without Close lives,
// with its memory mapped, until the process exits, and PurgeAll, SafeExit,
// SafePanic and PurgeAllOnSignal still wipe it.
func New(opts ...Option) (*Shuffler, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil Option", ErrInvalidOption)
		}
		if err := o.apply(&cfg); err != nil {
			return nil, err
		}
	}
	var seed [16]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	s := &Shuffler{cfg: cfg, shards: make([]shard, cfg.shards)}
	s.id = binary.LittleEndian.Uint64(seed[:8]) | 1
	// Starting the counter space at a random point below 2^62 keeps two
	// Shufflers that a caller gave the same key and salt from sharing counter
	// blocks, and still leaves at least 3*2^62 blocks to use.
	s.ctrs = ctr.NewAllocator(binary.LittleEndian.Uint64(seed[8:]) >> 2)
	s.onReturn.Store(cfg.onReturn)
	s.stride = uint32(min(runtime.GOMAXPROCS(0), cfg.shards))
	s.hints.New = func() any { return &shardHint{base: s.rr.Add(1) - 1} }

	// One small region holds everything key-related and the shards'
	// keystream scratch, locked and excluded from dumps like the arenas.
	own, err := s.mapRegion(ownScratch + len(s.shards)*scratchStride)
	if err != nil {
		return nil, err
	}
	s.own = own
	s.ownLocked, s.ownUnlocked = lockedLen(own), unlockedLen(own)
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
		return nil, err
	}
	s.cipherSlot = 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.s, sh.index, sh.ciph, sh.ov = s, uint32(i), c, c.Overhead()
		off := ownScratch + i*scratchStride
		sh.scratch = (*seal.Scratch)(unsafe.Pointer(&own.Data[off]))
		var rs [32]byte
		if _, err := rand.Read(rs[:]); err != nil {
			s.releaseAll()
			return nil, err
		}
		sh.rng = mrand.New(mrand.NewChaCha8(rs))
	}
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
	return s, nil
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
	r, err := osmem.Map(n, f)
	if err != nil {
		if errors.Is(err, osmem.ErrNoSecret) {
			return nil, fmt.Errorf("%w: %w", ErrNoSecretMemory, err)
		}
		if errors.Is(err, osmem.ErrLock) {
			s.lockFailed(n, err)
			return nil, fmt.Errorf("%w: %s: %w", ErrLockFailed, lockLimitText(), err)
		}
		return nil, fmt.Errorf("%w: %w", ErrOutOfMemory, err)
	}
	if r.LockErr != nil {
		s.lockFailed(n, r.LockErr)
	}
	return r, nil
}

// lockedLen is how much of the process's locked memory r takes, and
// unlockedLen how much of it stayed unlocked; both before r is unmapped.
func lockedLen(r *osmem.Region) int64 { return int64(r.LockedLen) }
func unlockedLen(r *osmem.Region) int64 {
	if r.Locked {
		return 0
	}
	return int64(len(r.Data))
}

// mapAux maps a region that is not an arena, counted in the Shuffler's
// locked or unlocked bytes until unmapAux.
func (s *Shuffler) mapAux(n int) (*osmem.Region, error) {
	r, err := s.mapRegion(n)
	if err != nil {
		return nil, err
	}
	s.countAux(r, 1)
	return r, nil
}

// unmapAux unmaps a region counted by mapAux (or handed over by
// countAux); the count drops once it is gone.
func (s *Shuffler) unmapAux(r *osmem.Region) error {
	l, u := lockedLen(r), unlockedLen(r)
	if err := osmem.Unmap(r); err != nil {
		return err
	}
	s.auxLocked.Add(-l)
	s.auxUnlocked.Add(-u)
	return nil
}

// countAux adds (sign 1) or removes (sign -1) r to the Shuffler's count of
// regions that are not arenas.
func (s *Shuffler) countAux(r *osmem.Region, sign int64) {
	s.auxLocked.Add(sign * lockedLen(r))
	s.auxUnlocked.Add(sign * unlockedLen(r))
}

// lockFailed counts a refused lock and tells the logger, the first time:
// a Shuffler at its limit would otherwise log at every allocation.
func (s *Shuffler) lockFailed(n int, err error) {
	s.lockFailures.Add(1)
	if s.lockLogged.CompareAndSwap(false, true) {
		s.log(slog.LevelWarn, "memshuffle: memory not locked into RAM; Stats.LockFailures counts further refusals",
			slog.Int("bytes", n), slog.Int64("rlimit_memlock", osmem.LockLimit()),
			slog.String("error", err.Error()))
	}
}

// lockLimitText says which limit a refused lock ran into and how to raise
// it.
func lockLimitText() string {
	lim := osmem.LockLimit()
	if lim < 0 {
		return "the system would not lock more memory"
	}
	return fmt.Sprintf("RLIMIT_MEMLOCK is %d bytes (%d KiB; raise it with `ulimit -l`, LimitMEMLOCK= in a systemd unit, or use LockBestEffort)", lim, lim>>10)
}

// releaseAll wipes and unmaps the Shuffler's own region.
func (s *Shuffler) releaseAll() {
	if s.own != nil {
		osmem.Wipe(s.own.Data)
		_ = osmem.Unmap(s.own)
		s.own = nil
	}
}

// Close wipes every entry, rented or not, and returns all memory to the
// operating system. Pointers and slices from Rent become invalid: using one
// faults. Close is idempotent; every other call afterwards returns ErrClosed.
//
// Close never waits for, and never faults, a Borrow function, ReadFrom,
// CopyFrom, ReadAll, ReadUntil or WriteTo running at the same time, even
// when called from inside the function: the memory of a shard such a
// function is using is wiped at once but stays mapped until the function
// returns; then what it wrote since is wiped, the memory unmapped, and the
// function's caller gets ErrClosed.
func (s *Shuffler) Close() error {
	if s == nil || len(s.shards) == 0 {
		return nil
	}
	s.stopKeyRotation() // before closeMu, which a rotation takes
	unregister(s)
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.released {
		return nil
	}
	s.closed.Store(true)
	s.stopBackground()
	if s.stopWatch != nil {
		close(s.stopWatch)
		s.stopWatch = nil
	}
	if s.watchDone != nil { // closed by Purge, perhaps, but not waited for
		<-s.watchDone
		s.watchDone = nil
	}
	var errs []error
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.closed = true
		for _, a := range sh.arenas {
			if a == nil {
				continue
			}
			osmem.Wipe(a.mem[:a.used])
			if sh.pins > 0 {
				// A Borrow function or fill may still write here: unmapping
				// now would fault it. endPinned unmaps after the last one.
				sh.orphans = append(sh.orphans, a.reg)
			} else if err := osmem.Unmap(a.reg); err != nil {
				errs = append(errs, err)
			}
		}
		if sh.backup != nil {
			sh.dropBackup()
		}
		if sh.spare != nil {
			if err := s.unmapAux(sh.spare); err != nil {
				errs = append(errs, err)
			}
			sh.spare = nil
		}
		sh.arenas, sh.arenaHoles, sh.cur, sh.chunks = nil, nil, nil, nil
		sh.free = store.FreeSpace{}
		sh.nslots, sh.freeHead, sh.rents = 0, 0, nil
		sh.exp = expiries{}
		sh.wakeWaiters() // they retry and see ErrClosed
		sh.live, sh.rented, sh.viewed, sh.liveBytes, sh.bigBytes, sh.mapped, sh.lockedBytes, sh.unlocked, sh.dumpable = 0, 0, 0, 0, 0, 0, 0, 0, 0
		sh.mu.Unlock()
	}
	s.releaseAll()
	s.released = true
	return errors.Join(errs...)
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
	h := s.hints.Get().(*shardHint)
	i := (h.base + s.stride*(h.n/hintRun)) & uint32(len(s.shards)-1)
	h.n++
	s.hints.Put(h)
	return &s.shards[i]
}

// lookup validates h and returns its shard, locked, and slot. The caller
// unlocks the shard.
func (s *Shuffler) lookup(h Handle) (*shard, *slot, error) {
	if s == nil || s.closed.Load() || len(s.shards) == 0 {
		return nil, nil, ErrClosed
	}
	if h.owner != s.id || h.shard() >= uint32(len(s.shards)) {
		return nil, nil, ErrInvalidHandle
	}
	sh := &s.shards[h.shard()]
	sh.mu.Lock()
	if sh.closed {
		sh.mu.Unlock()
		return nil, nil, ErrClosed
	}
	i := h.slot()
	if i >= sh.nslots {
		sh.mu.Unlock()
		return nil, nil, ErrInvalidHandle
	}
	sl := sh.slot(i)
	if sl.state() == stateFree || sl.gen() != h.gen() {
		sh.mu.Unlock()
		return nil, nil, ErrInvalidHandle
	}
	sh.expired(i, sl, nil)
	return sh, sl, nil
}

// lookupLive is lookup for calls that need a live entry: an expired one
// answers ErrExpired. Return, ReturnView and Free handle expired entries
// themselves.
func (s *Shuffler) lookupLive(h Handle) (*shard, *slot, error) {
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

// bytes returns the entry's data.
func (sh *shard) bytes(sl *slot) []byte {
	a := sh.arenas[sl.arena]
	return a.mem[sl.off : sl.off+sl.size : sl.off+sl.size]
}

// extent returns all the memory the entry takes: its data, then its tag in
// the AEAD modes.
func (sh *shard) extent(sl *slot) []byte {
	a := sh.arenas[sl.arena]
	end := sl.off + sl.size + uint32(sh.ov)
	return a.mem[sl.off:end:end]
}

// setAD puts the Handle of slot i, the associated data of the AEAD modes,
// into the shard's scratch.
func (sh *shard) setAD(i uint32, sl *slot) {
	h := makeHandle(sh.s.id, sh.index, i, sl.gen())
	binary.BigEndian.PutUint64(sh.scratch.AD[:8], h.owner)
	binary.BigEndian.PutUint64(sh.scratch.AD[8:], h.id)
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

// newArena maps an arena of at least n bytes for the shard.
func (sh *shard) newArena(n int) (*arena, error) {
	return sh.mapArena(sh.arenaSize(n))
}

// arenaSize is the size of the next arena for an entry of n bytes: arenas
// grow with the data a shard holds, up to maxArenaSize.
func (sh *shard) arenaSize(n int) int {
	sz := sh.s.cfg.arenaSize
	// Oversize entries do not count: they never share these arenas.
	for sz < maxArenaSize && int64(sz) < (sh.liveBytes-sh.bigBytes)/16 {
		sz <<= 1
	}
	return max(sz, n)
}

// oversize reports whether an entry cannot share an arena: it would not fit
// in one of the largest size a shard maps for shared use.
func (sh *shard) oversize(size, align int) bool {
	return size+align-1 > max(maxArenaSize, sh.s.cfg.arenaSize)
}

// dedicated maps an arena for one oversize entry alone, of just its size:
// not the shard's usual arena size, and never the current arena.
func (sh *shard) dedicated(size, align int) (*arena, int, error) {
	a, err := sh.mapArena(size + align - 1)
	if err != nil {
		return nil, 0, err
	}
	// Arenas start on a page boundary, which satisfies every alignment.
	a.dedicated = true
	a.top, a.used = size, size
	return a, 0, nil
}

// mapArena maps an arena of exactly n bytes, rounded as osmem.Map rounds,
// or adopts the spare region the background shuffler mapped ahead of time,
// when it is large enough.
func (sh *shard) mapArena(n int) (*arena, error) {
	var reg *osmem.Region
	if sh.spare != nil && len(sh.spare.Data) >= n {
		reg, sh.spare = sh.spare, nil
		sh.s.countAux(reg, -1) // an arena from now on
	} else {
		var err error
		if reg, err = sh.s.mapRegion(n); err != nil {
			return nil, err
		}
	}
	a := &arena{reg: reg, mem: reg.Data}
	if k := len(sh.arenaHoles); k > 0 {
		a.index = sh.arenaHoles[k-1]
		sh.arenaHoles = sh.arenaHoles[:k-1]
		sh.arenas[a.index] = a
	} else {
		a.index = uint32(len(sh.arenas))
		sh.arenas = append(sh.arenas, a)
	}
	sh.mapped += int64(len(a.mem))
	if !reg.DontDump {
		sh.dumpable += int64(len(a.mem))
	}
	sh.lockedBytes += lockedLen(reg)
	sh.unlocked += unlockedLen(reg)
	return a, nil
}

// release gives back an arena that holds no entry: it unmaps it now or,
// when later is not nil, hands its region to later for the caller to unmap
// once it has let go of the shard lock. Every byte an entry left has been
// wiped when it left, so there is nothing to clear here. When the
// operating system refuses, the arena stays and the next Shuffle retries.
func (sh *shard) release(a *arena, later *unmapList) error {
	// Unmap empties the region's Data: count first.
	locked, unlocked := lockedLen(a.reg), unlockedLen(a.reg)
	if later != nil {
		later.add(sh.s, a.reg)
	} else if err := osmem.Unmap(a.reg); err != nil {
		a.unmapFailed = true
		return err
	}
	// Empty, its free space is one extent from offset 0, if any.
	sh.free.Remove(a.index, 0)
	sh.arenas[a.index] = nil
	sh.arenaHoles = append(sh.arenaHoles, a.index)
	sh.mapped -= int64(len(a.mem))
	if !a.reg.DontDump {
		sh.dumpable -= int64(len(a.mem))
	}
	sh.lockedBytes -= locked
	sh.unlocked -= unlocked
	if sh.cur == a {
		sh.cur = nil
	}
	sh.s.arenasReleased.Add(1)
	return nil
}

// fit bump-allocates size bytes aligned to align in a, the current arena
// or a fresh one becoming it, if they fit. Bytes skipped for the alignment
// become free space.
func (sh *shard) fit(a *arena, size, align int) (int, bool) {
	if a == nil {
		return 0, false
	}
	off := (a.top + align - 1) &^ (align - 1)
	if off > len(a.mem) || size > len(a.mem)-off {
		return 0, false
	}
	if off > a.top {
		sh.free.Insert(a.index, uint32(a.top), uint32(off-a.top))
	}
	a.top = off + size
	a.used = max(a.used, a.top)
	return off, true
}

// setCur makes a (nil for none) the current arena, and returns the old
// one, whose unused space becomes free space. Releasing the old one if it
// is empty is the caller's choice: a shuffle fills its fresh arenas only
// after laying them all out.
func (sh *shard) setCur(a *arena) *arena {
	old := sh.cur
	if old == a {
		return nil
	}
	sh.cur = a
	if old != nil && old.top < len(old.mem) {
		sh.free.Insert(old.index, uint32(old.top), uint32(len(old.mem)-old.top))
		old.top = len(old.mem)
	}
	return old
}

// replaceCur is setCur for a change of current arena outside a shuffle: an
// old current arena left empty is released (see release for later).
func (sh *shard) replaceCur(a *arena, later *unmapList) {
	if old := sh.setCur(a); old != nil && old.live == 0 {
		_ = sh.release(old, later)
	}
}

// placeNew finds size bytes for a new entry: in space an earlier entry
// released if some is large enough, else as place does.
func (sh *shard) placeNew(size, align int) (*arena, int, error) {
	if sh.free.Len() == 0 || sh.oversize(size, align) {
		return sh.place(size, align, nil)
	}
	if a, off, ok := sh.takeFree(size, align); ok {
		return a, off, nil
	}
	if off, ok := sh.fit(sh.cur, size, align); ok {
		return sh.cur, off, nil
	}
	// Before mapping another arena while holes add up to half of one,
	// compact: the entry may fit in the holes that makes.
	if sh.free.Bytes() >= int64(sh.s.cfg.arenaSize)/2 {
		for range reclaimSteps / 4 {
			sh.compact(nil)
		}
		if a, off, ok := sh.takeFree(size, align); ok {
			return a, off, nil
		}
	}
	return sh.place(size, align, nil)
}

// takeFree takes size bytes from the free-space index.
func (sh *shard) takeFree(size, align int) (*arena, int, bool) {
	ai, off, ok := sh.free.Take(uint32(size), uint32(align))
	if !ok {
		return nil, 0, false
	}
	a := sh.arenas[ai]
	a.used = max(a.used, int(off)+size)
	return a, int(off), true
}

// place finds size bytes for an entry in the shard's current arena, mapping
// a new one when it is full. An old current arena left empty is released
// as release does with later.
func (sh *shard) place(size, align int, later *unmapList) (*arena, int, error) {
	if off, ok := sh.fit(sh.cur, size, align); ok {
		return sh.cur, off, nil
	}
	if sh.oversize(size, align) {
		// An arena of its own, which leaves the current arena's free space
		// for the entries after it.
		return sh.dedicated(size, align)
	}
	a, err := sh.newArena(size)
	if err != nil {
		return nil, 0, err
	}
	sh.replaceCur(a, later)
	off, _ := sh.fit(a, size, align)
	return a, off, nil
}

// move copies the ciphertext of an unrented entry to dst and wipes where it
// was. The counter run is bound to the entry, not to its address, so the
// ciphertext moves as it is.
func (sh *shard) move(sl *slot, dst *arena, off int, later *unmapList) uint64 {
	src := sh.extent(sl)
	copy(dst.mem[off:off+len(src)], src)
	sh.rehome(sl, dst, off, later)
	return uint64(sl.size)
}

// rehome points the slot at off in a, where its bytes have just been
// written, after wiping the place they were.
func (sh *shard) rehome(sl *slot, a *arena, off int, later *unmapList) {
	osmem.Wipe(sh.extent(sl))
	sh.vacate(sl, later)
	sl.arena, sl.off = a.index, uint32(off)
	a.live++
	a.bytes += int(sl.size) + sh.ov
}

// relocate moves an unrented entry that is not in the current arena into
// it. It reports the bytes moved, and false when there was no memory to
// move into; the entry then stays, safe, where it was.
func (sh *shard) relocate(sl *slot, later *unmapList) (uint64, bool) {
	if sl.state() != stateLive || sh.arenas[sl.arena] == sh.cur {
		return 0, true
	}
	a, off, err := sh.place(int(sl.size)+sh.ov, sl.align(), later)
	if err != nil {
		return 0, false
	}
	return sh.move(sl, a, off, later), true
}

// drop wipes a live entry and takes it out of its arena and the shard's
// counts; the caller decides what becomes of the slot.
func (sh *shard) drop(sl *slot, later *unmapList) {
	osmem.Wipe(sh.extent(sl))
	sh.live--
	sh.liveBytes -= int64(sl.size)
	if sh.oversize(int(sl.size)+sh.ov, sl.align()) {
		sh.bigBytes -= int64(sl.size)
	}
	sh.vacate(sl, later)
}

// dropBackup wipes and unmaps the AEAD backup buffer; the next open that
// needs one maps it again.
func (sh *shard) dropBackup() {
	osmem.Wipe(sh.backup.Data)
	_ = sh.s.unmapAux(sh.backup)
	sh.backup = nil
}

// wakeWaiters releases every goroutine waiting for an entry of the shard.
func (sh *shard) wakeWaiters() {
	if sh.wake != nil {
		close(sh.wake)
		sh.wake = nil
	}
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

// vacate drops an entry, already wiped, from its arena: its space becomes
// free space, and the arena is released once it is empty and no longer the
// current one (see release for later).
func (sh *shard) vacate(sl *slot, later *unmapList) {
	a := sh.arenas[sl.arena]
	a.live--
	a.bytes -= int(sl.size) + sh.ov
	if !a.dedicated {
		off, n := sh.free.Insert(a.index, sl.off, sl.size+uint32(sh.ov))
		if a == sh.cur && int(off+n) == a.top {
			// Give it back to the bump space instead.
			sh.free.Remove(a.index, off)
			a.top = int(off)
		}
	}
	if a.live == 0 && a != sh.cur {
		_ = sh.release(a, later)
	}
}
