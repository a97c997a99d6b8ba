package store

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// Arena is one mapped region entries are placed in.
type Arena struct {
	Reg   *osmem.Region
	Mem   []byte
	Used  int // high-water mark: bytes past it have never held an entry
	Top   int // bump offset while the arena is the current one
	Live  int // entries (live or borrowed) placed here
	Bytes int // bytes those entries take, tags included
	Index uint32

	// Dedicated marks an arena mapped for one oversize entry: its space is
	// never indexed, so no small entry keeps it mapped after that one goes.
	Dedicated bool

	UnmapFailed bool // the OS refused to take it back; a Shuffle retries
}

// MaxArenas is the most arenas a shard holds at once: a Slot keeps its
// arena index in 16 bits, which is what keeps a live entry's metadata at 24
// bytes. Shared arenas grow with the shard's live bytes (a sixteenth of
// them, up to MaxArenaSize) and an oversize entry is larger than
// MaxArenaSize, so a shard meets the limit only near a terabyte; past it,
// Map and Adopt return an error (see Room) instead of an index that would
// not fit.
const MaxArenas = 1<<16 - 1

// errArenaLimit is what Arenas wraps when its owner gave no Full error.
var errArenaLimit = errors.New("store: arena limit reached")

// MapFunc maps a region of n bytes for an arena, with the lock and dump
// settings of its owner, and wraps its errors for the owner's callers.
type MapFunc func(n int) (*osmem.Region, error)

// Arenas is a shard's set of arenas: mapping and release, the current
// arena new entries are bumped into, the index of free space in the
// others, and the accounting of what is mapped, locked and dumpable, all
// in one place.
//
// The current arena's space from Top on is not in the free-space index;
// every other byte of every arena but dedicated ones is in an entry or in
// the index.
type Arenas struct {
	list  []*Arena // by arena index; nil where released
	holes []uint32 // indexes of released arenas, for reuse
	cur   *Arena

	mapRegion MapFunc
	full      error          // wrapped when the set holds MaxArenas arenas
	aux       *Aux           // where regions released to an UnmapList count
	released  *atomic.Uint64 // arenas given back, for statistics

	mapped, locked, unlocked, dumpable int64

	relock []*Arena // Relock's scratch list

	// With deferMap, Map maps nothing and returns a *NeedMap instead, so
	// that the owner can map the region with no lock held and offer it as
	// pending, for a Map of pendingFor bytes, which adopts it.
	deferMap   bool
	pending    *osmem.Region
	pendingFor int

	// Regions up to keepAny bytes go idle whatever the set maps (see
	// idles).
	keepAny int

	// Last: over a kilobyte that Rent and Return never touch.
	free FreeSpace
}

// List returns the arenas by index, nil where one was released. The
// caller must not change the slice.
func (s *Arenas) List() []*Arena { return s.list }

// Get returns arena i.
func (s *Arenas) Get(i uint32) *Arena { return s.list[i] }

// Cur returns the current arena, or nil.
func (s *Arenas) Cur() *Arena { return s.cur }

// FreeSpace returns the index of free extents.
func (s *Arenas) FreeSpace() *FreeSpace { return &s.free }

// Mapped is the bytes of all arenas.
func (s *Arenas) Mapped() int64 { return s.mapped }

// Locked is how much of the process's locked memory the arenas take.
func (s *Arenas) Locked() int64 { return s.locked }

// Unlocked is the bytes of arenas the system would not lock.
func (s *Arenas) Unlocked() int64 { return s.unlocked }

// Dumpable is the bytes of arenas a core dump would include.
func (s *Arenas) Dumpable() int64 { return s.dumpable }

// Map maps an arena of exactly n bytes, rounded as osmem.Map rounds. When
// the set holds MaxArenas arenas it maps nothing and returns the owner's
// Full error, wrapped.
func (s *Arenas) Map(n int) (*Arena, error) {
	if err := s.Room(); err != nil {
		return nil, err
	}
	if r := s.pending; r != nil && s.pendingFor == n {
		s.pending = nil
		s.aux.Add(r, -1)
		return s.adopt(r), nil
	}
	if r := s.aux.TakeIdle(n); r != nil {
		return s.adopt(r), nil
	}
	if s.deferMap {
		return nil, &NeedMap{N: n}
	}
	reg, err := s.mapRegion(n)
	if err != nil {
		return nil, err
	}
	return s.adopt(reg), nil
}

// NeedMap is Map's error while DeferMap is on: an arena of N bytes is
// needed.
type NeedMap struct{ N int }

func (e *NeedMap) Error() string { return fmt.Sprintf("store: an arena of %d bytes to map", e.N) }

// DeferMap turns deferred mapping on or off, and reports whether it was
// on: see NeedMap and Offer.
func (s *Arenas) DeferMap(on bool) (was bool) {
	was, s.deferMap = s.deferMap, on
	return was
}

// Offer makes r, a region counted in the Aux of the set, the one the next
// Map of n bytes adopts instead of mapping.
//
// It refuses, and reports false, while another region is on offer: an
// Alloc's encryption of a large entry lets go of the shard between its
// Offer and its TakeOffer, and a second Offer meanwhile would drop the
// first region, mapped and locked, for good.
func (s *Arenas) Offer(r *osmem.Region, n int) bool {
	if s.pending != nil {
		return false
	}
	s.pending, s.pendingFor = r, n
	return true
}

// TakeOffer returns the region Offer gave that no Map took, or nil; it is
// the caller's again.
func (s *Arenas) TakeOffer() *osmem.Region {
	r := s.pending
	s.pending = nil
	return r
}

// OfferUnlocked reports whether the region on offer, if any, is one the
// system would not lock: the next Map of its size would make it an
// unlocked arena.
func (s *Arenas) OfferUnlocked() bool { return s.pending != nil && !s.pending.Locked }

// Adopt makes reg, a region counted in the Aux of the set until now, an
// arena of the set. When the set holds MaxArenas arenas it returns the
// Room error and reg stays the caller's, counted in the Aux.
func (s *Arenas) Adopt(reg *osmem.Region) (*Arena, error) {
	if err := s.Room(); err != nil {
		return nil, err
	}
	s.aux.Add(reg, -1)
	return s.adopt(reg), nil
}

// Room returns nil when the set can take one more arena, and otherwise the
// owner's Full error, wrapped with the limit: an index past MaxArenas would
// not fit in a Slot.
func (s *Arenas) Room() error {
	if len(s.holes) == 0 && len(s.list) >= MaxArenas {
		return fmt.Errorf("%w: a shard holds at most %d arenas at once (use fewer, larger arenas or more shards)", s.full, MaxArenas)
	}
	return nil
}

func (s *Arenas) adopt(reg *osmem.Region) *Arena {
	a := &Arena{Reg: reg, Mem: reg.Data}
	if k := len(s.holes); k > 0 {
		a.Index = s.holes[k-1]
		s.holes = s.holes[:k-1]
		s.list[a.Index] = a
	} else {
		a.Index = uint32(len(s.list))
		s.list = append(s.list, a)
	}
	s.mapped += int64(len(a.Mem))
	if !reg.DontDump {
		s.dumpable += int64(len(a.Mem))
	}
	s.locked += LockedLen(reg)
	s.unlocked += UnlockedLen(reg)
	return a
}

// Release gives back an arena that holds no entry: it unmaps it now or,
// when later is not nil, hands its region to later for the caller to unmap
// once it has let go of the shard lock. Every byte an entry left has been
// wiped when it left, so there is nothing to clear here. When the
// operating system refuses, the arena stays and the next Shuffle retries.
//
// With later nil, a shared arena's region goes idle in the Aux instead,
// for the next Map of any shard (see idle.go), but not while an arena of
// the shard went unlocked for want of room: then its lock is better used
// by that arena (see Relock).
func (s *Arenas) Release(a *Arena, later *UnmapList) error {
	// Unmap empties the region's Data, and on Windows drops its exclusion
	// from dumps: count first.
	locked, unlocked := LockedLen(a.Reg), UnlockedLen(a.Reg)
	dumpable := !a.Reg.DontDump
	keep := later == nil && s.idles(a)
	unmapped := later == nil && !keep // here, now
	if later != nil {
		later.Add(s.aux, a.Reg)
	} else if keep {
		s.aux.PutIdle(a.Reg)
	} else if err := osmem.Unmap(a.Reg); err != nil {
		a.UnmapFailed = true
		// Windows unlocks the pages and drops their exclusion from dumps
		// before the release it refused, and takes them back where it
		// can: the arena stays, counted as it is left.
		if dumpable != !a.Reg.DontDump {
			s.dumpable += int64(len(a.Mem))
		}
		s.locked += LockedLen(a.Reg) - locked
		s.unlocked += UnlockedLen(a.Reg) - unlocked
		return err
	}
	if unmapped {
		s.aux.freed.Add(1)
	}
	// Empty, its free space is one extent from offset 0, if any.
	s.free.Remove(a.Index, 0)
	s.list[a.Index] = nil
	s.holes = append(s.holes, a.Index)
	s.mapped -= int64(len(a.Mem))
	if dumpable {
		s.dumpable -= int64(len(a.Mem))
	}
	s.locked -= locked
	s.unlocked -= unlocked
	if s.cur == a {
		s.cur = nil
	}
	if unmapped {
		// A region put on later counts when it is unmapped (UnmapAll):
		// Shuffle hands some of them to the next shard instead. An idle
		// one counts when the Aux unmaps it.
		s.released.Add(1)
	}
	if unmapped && locked > 0 && s.unlocked > 0 {
		// The unmap gave back locked memory: arenas mapped unlocked at a
		// peak would otherwise stay so, swappable, until a Shuffle, with
		// room under the limit for them.
		s.Relock()
	}
	return nil
}

// idles reports whether Release lets a's region go idle rather than unmap
// it: a shared arena's, mapped as the shard maps them all, in a shard none
// of whose arenas the system refused to lock (then s.unlocked, which counts
// every arena under LockNone, counts only refused ones), and no larger
// than an eighth of what the shard maps, or than its smallest arenas.
// Without that bound, entries larger than the shard's usual arenas, which
// get arenas of their own sizes, held a fifth more memory than they did
// without idle regions in BenchmarkChurn/max=1048576.
//
// A region the system refused to lock goes idle only where it locks
// nothing at all (RLIMIT_MEMLOCK 0, without the privilege to pass it):
// elsewhere the next arena, mapped afresh, may be locked, or its entry
// go into locked room another shard has (see the root package's
// lockedRoomElsewhere). There, entries that each fill an arena mapped
// and unmapped one for every Alloc and Free (TestChurnReusesEmptiedArena
// at ulimit -l 0: 100 for 100).
func (s *Arenas) idles(a *Arena) bool {
	n := int64(len(a.Mem))
	if a.Dedicated || a.Reg.Locked && s.unlocked != 0 || n > int64(s.keepAny) && n*8 > s.mapped {
		return false
	}
	return a.Reg.LockErr == nil || osmem.BindingLockLimit() == 0
}

// Fit bump-allocates size bytes aligned to align in a, the current arena
// or a fresh one becoming it, if they fit. Bytes skipped for the alignment
// become free space.
func (s *Arenas) Fit(a *Arena, size, align int) (int, bool) {
	off, ok := fitAt(a, size, align)
	if !ok {
		return 0, false
	}
	if off > a.Top {
		s.free.Insert(a.Index, uint32(a.Top), uint32(off-a.Top))
	}
	a.Top = off + size
	a.Used = max(a.Used, a.Top)
	return off, true
}

// Fits reports whether Fit would find room for size bytes in a, without
// taking it.
func (s *Arenas) Fits(a *Arena, size, align int) bool {
	_, ok := fitAt(a, size, align)
	return ok
}

// fitAt is where size bytes aligned to align go in a's bump space, if
// they fit.
func fitAt(a *Arena, size, align int) (int, bool) {
	if a == nil {
		return 0, false
	}
	off := (a.Top + align - 1) &^ (align - 1)
	return off, off <= len(a.Mem) && size <= len(a.Mem)-off
}

// SetCur makes a (nil for none) the current arena, and returns the old
// one, whose unused space becomes free space. Releasing the old one if it
// is empty is the caller's choice: a shuffle fills its fresh arenas only
// after laying them all out.
func (s *Arenas) SetCur(a *Arena) *Arena {
	old := s.cur
	if old == a {
		return nil
	}
	s.cur = a
	if old != nil && old.Top < len(old.Mem) {
		s.free.Insert(old.Index, uint32(old.Top), uint32(len(old.Mem)-old.Top))
		old.Top = len(old.Mem)
	}
	return old
}

// ReplaceCur is SetCur for a change of current arena outside a shuffle: an
// old current arena left empty is released (see Release for later).
func (s *Arenas) ReplaceCur(a *Arena, later *UnmapList) {
	if old := s.SetCur(a); old != nil && old.Live == 0 {
		_ = s.Release(old, later)
	}
}

// TakeFree takes size bytes aligned to align from the free-space index.
func (s *Arenas) TakeFree(size, align int) (*Arena, int, bool) {
	ai, off, ok := s.free.Take(uint32(size), uint32(align))
	if !ok {
		return nil, 0, false
	}
	a := s.list[ai]
	a.Used = max(a.Used, int(off)+size)
	return a, int(off), true
}

// TakeFreeWhere is TakeFree limited to the arenas accept accepts.
func (s *Arenas) TakeFreeWhere(size, align int, accept func(*Arena) bool) (*Arena, int, bool) {
	ai, off, ok := s.free.TakeWhere(uint32(size), uint32(align), func(ai uint32) bool { return accept(s.list[ai]) })
	if !ok {
		return nil, 0, false
	}
	a := s.list[ai]
	a.Used = max(a.Used, int(off)+size)
	return a, int(off), true
}

// Vacate takes an entry of n bytes at off, already wiped, out of a: its
// space becomes free space, and the arena is released once it is empty
// and no longer the current one (see Release for later).
func (s *Arenas) Vacate(a *Arena, off, n uint32, later *UnmapList) {
	a.Live--
	a.Bytes -= int(n)
	if !a.Dedicated {
		off, n := s.free.Insert(a.Index, off, n)
		if a == s.cur && int(off+n) == a.Top {
			// Give it back to the bump space instead.
			s.free.Remove(a.Index, off)
			a.Top = int(off)
		}
	}
	if a.Live == 0 && a != s.cur {
		_ = s.Release(a, later)
	}
}

// Relock locks arenas the system refused to lock when they were mapped,
// now that it may have room again. Arenas mapped without a lock (LockNone)
// have no refusal recorded and stay unlocked.
//
// It tries them smallest first and stops at the first refusal. The
// memory-lock limit is a number of bytes, so an arena refused leaves every
// larger one refused too: smallest first locks as many arenas as there is
// room for, at the cost of one refused call, where every arena tried in
// turn would cost one each time an arena is released. In index order, as
// it was, one large arena the system refused hid every smaller one after
// it, though those would have fit.
func (s *Arenas) Relock() {
	if s.unlocked == 0 {
		return
	}
	todo := s.relock[:0]
	for _, a := range s.list {
		if a != nil && !a.Reg.Locked && a.Reg.LockErr != nil {
			todo = append(todo, a)
		}
	}
	slices.SortFunc(todo, func(x, y *Arena) int { return cmp.Compare(len(x.Mem), len(y.Mem)) })
	for _, a := range todo {
		u := UnlockedLen(a.Reg)
		// Idle regions, of this shard or another, may hold the room.
		if RetryWithIdle(func() error { return osmem.Relock(a.Reg) }) != nil {
			break
		}
		s.unlocked -= u
		s.locked += LockedLen(a.Reg)
	}
	// Kept for the next call, without holding on to arenas.
	clear(todo)
	s.relock = todo[:0]
}

// Wipe zeroes every byte any entry of any arena has held, leaving them
// mapped.
func (s *Arenas) Wipe() {
	for _, a := range s.list {
		if a != nil {
			osmem.Wipe(a.Mem[:a.Used])
		}
	}
}

// Drop forgets every arena without unmapping it and zeroes the accounting;
// the caller has unmapped them or taken their regions over.
func (s *Arenas) Drop() {
	s.list, s.holes, s.cur = nil, nil, nil
	s.free = FreeSpace{}
	s.mapped, s.locked, s.unlocked, s.dumpable = 0, 0, 0, 0
}

// LockedLen is how much of the process's locked memory r takes, and
// UnlockedLen how much of it stayed unlocked; both before r is unmapped.
func LockedLen(r *osmem.Region) int64 { return int64(r.LockedLen) }

// UnlockedLen: see LockedLen.
func UnlockedLen(r *osmem.Region) int64 {
	if r.Locked {
		return 0
	}
	return int64(len(r.Data))
}

// DumpableLen is how many bytes of r a core dump would include.
func DumpableLen(r *osmem.Region) int64 {
	if r.DontDump {
		return 0
	}
	return int64(len(r.Data))
}

// Aux counts the regions a Shuffler maps that are not arenas of any shard
// (the background shuffler's spares, released arenas waiting in an
// UnmapList), so that what it reports as locked matches what the
// system has locked, and what it reports as dumpable what a dump would
// hold. It is safe for concurrent use.
type Aux struct {
	locked, unlocked, dumpable atomic.Int64
	// begun and ended count the changes to locked memory (Map, Unmap,
	// Relock, Change) that have begun and ended. Between the two, the
	// system's count of locked memory has changed at the syscall and this
	// one not yet, or the other way round; Quiet tells a reader whether it
	// read both in step.
	begun, ended atomic.Uint64
	// freed counts the regions unmapped, through the Aux or by an arena's
	// Release: a mapping refused before may succeed after one.
	freed atomic.Uint64

	mu      sync.Mutex
	refused []auxRegion // regions the system would not unmap, for Retry

	// Released, when set, counts the arenas' regions given back to the
	// system through the Aux (UnmapArena, and so UnmapAll, the idle pool
	// and Retry).
	Released *atomic.Uint64

	// IdleCap is how many idle regions PutIdle holds at most (at least
	// one): the owner's shard count, so that each shard's last emptied
	// arena can wait for its next. See idle.go.
	IdleCap int
	idleMu  sync.Mutex
	idle    []*osmem.Region // oldest first
	idleN   atomic.Int64    // bytes in idle, read without idleMu
}

// Map calls mapFn, which maps a region, and counts the region in.
func (x *Aux) Map(mapFn func() (*osmem.Region, error)) (*osmem.Region, error) {
	x.begun.Add(1)
	defer x.ended.Add(1)
	r, err := mapFn()
	if err != nil {
		return nil, err
	}
	x.Add(r, 1)
	return r, nil
}

// Change runs f, which changes the system's locked memory outside Map,
// Unmap and Relock (locks a region it then counts in, say), as one step
// for Quiet: a reader that sees no step under way before and after its
// reads has read the system's count and this one in step.
func (x *Aux) Change(f func()) {
	x.begun.Add(1)
	defer x.ended.Add(1)
	f()
}

// Quiet returns how many changes to locked memory have begun, and whether
// none is under way. Two reads of the counts and of the system's locked
// memory are in step when Quiet reports none under way before and after
// them, with the same number begun.
func (x *Aux) Quiet() (begun uint64, quiet bool) {
	e := x.ended.Load()
	b := x.begun.Load()
	return b, b == e
}

// Add counts r in (sign 1) or out (sign -1).
func (x *Aux) Add(r *osmem.Region, sign int64) {
	x.locked.Add(sign * LockedLen(r))
	x.unlocked.Add(sign * UnlockedLen(r))
	x.dumpable.Add(sign * DumpableLen(r))
}

// Unmap unmaps r, counted here; the count drops as the unmap begins (see
// unmap). A region the system will not take back is counted again, as
// the refusal left it, and is kept for Retry: the callers let go of it,
// wiped, and would otherwise leave it mapped, and locked, for good.
func (x *Aux) Unmap(r *osmem.Region) error { return x.giveBack(auxRegion{r, false}) }

// KeepRefused counts in r, a region the Aux did not count whose unmap
// the system refused, and keeps it for Retry, as Unmap keeps one it
// counted: the caller lets go of it, wiped.
func (x *Aux) KeepRefused(r *osmem.Region) {
	x.Add(r, 1)
	x.keep(auxRegion{r, false})
}

// UnmapArena is Unmap for the region of an arena: unmapped now or by a
// later Retry, it counts in Released.
func (x *Aux) UnmapArena(r *osmem.Region) error { return x.giveBack(auxRegion{r, true}) }

func (x *Aux) giveBack(k auxRegion) error {
	err := x.unmap(k)
	if err != nil {
		x.keep(k)
	}
	return err
}

// keep holds k, which the system would not unmap, for Retry.
func (x *Aux) keep(k auxRegion) {
	x.mu.Lock()
	x.refused = append(x.refused, k)
	x.mu.Unlock()
}

// Relock locks r, a region counted here that the system refused to lock
// when it was mapped, as osmem.Relock does, and counts it locked.
func (x *Aux) Relock(r *osmem.Region) error {
	x.begun.Add(1)
	defer x.ended.Add(1)
	l, u, d := LockedLen(r), UnlockedLen(r), DumpableLen(r)
	if err := osmem.Relock(r); err != nil {
		return err
	}
	x.locked.Add(LockedLen(r) - l)
	x.unlocked.Add(UnlockedLen(r) - u)
	x.dumpable.Add(DumpableLen(r) - d)
	return nil
}

// auxRegion is a region the Aux unmaps, kept for Retry while the system
// refuses, and whether it is an arena's, which counts in Released once
// unmapped.
type auxRegion struct {
	r     *osmem.Region
	arena bool
}

// unmap counts k's region out and unmaps it, and counts an arena's in
// Released; if the system refuses, it counts the region in again as the
// refusal left it.
//
// It counts r out before the munmap, not after: the system drops the
// region from its locked memory at the start of the syscall, and frees
// the pages after that (milliseconds for a large region), so a count that
// dropped only once munmap had returned held the region for that long,
// and for as long as the goroutine then waited for a CPU, while another
// mapping locked the room it left: Stats.LockedBytes, which reads the Aux
// with no lock the unmap takes, then counted those bytes twice and could
// exceed RLIMIT_MEMLOCK. Counted out first, a region is counted only
// while the system has it (Map counts one in once it is locked), and the
// count never exceeds what the system has locked.
func (x *Aux) unmap(k auxRegion) error {
	r := k.r
	x.begun.Add(1)
	defer x.ended.Add(1)
	x.Add(r, -1) // before the unmap, which on Windows clears DontDump
	if err := osmem.Unmap(r); err != nil {
		// Windows unlocks the pages and drops their exclusion from dumps
		// before the release it refused, and takes them back where it
		// can: the region stays, counted as it is left.
		x.Add(r, 1)
		return err
	}
	x.freed.Add(1)
	if k.arena && x.Released != nil {
		x.Released.Add(1)
	}
	return nil
}

// Waiting is how many regions the system refused to unmap wait for Retry.
func (x *Aux) Waiting() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.refused)
}

// Freed counts the regions unmapped so far, arenas included.
func (x *Aux) Freed() uint64 { return x.freed.Load() }

// Retry unmaps the regions the system refused to unmap before, and
// returns the errors of those it refuses again, which it keeps. It holds
// the list throughout, so that a Close retrying meanwhile waits for it
// and then sees what is left, not an empty list while a region is still
// mapped.
func (x *Aux) Retry() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	var errs []error
	kept := x.refused[:0]
	for _, k := range x.refused {
		if err := x.unmap(k); err != nil {
			kept = append(kept, k)
			errs = append(errs, err)
		}
	}
	clear(x.refused[len(kept):])
	x.refused = kept
	return errors.Join(errs...)
}

// Locked is the locked bytes counted.
func (x *Aux) Locked() int64 { return x.locked.Load() }

// Unlocked is the unlocked bytes counted.
func (x *Aux) Unlocked() int64 { return x.unlocked.Load() }

// Dumpable is the bytes counted that are not excluded from core dumps.
func (x *Aux) Dumpable() int64 { return x.dumpable.Load() }

// UnmapList collects the regions of arenas released under a shard lock,
// for the caller to unmap after it has let go of the lock: unmapping can
// stall (TLB shootdowns, munlock), and a background step should not make a
// Rent wait for that. Functions that can release an arena take one as an
// argument; a caller that unmaps at once passes nil, so what a release
// does is decided by its caller, never by state another path has set.
type UnmapList []*osmem.Region

// Add takes r, the region of an arena just released, for unmapping later.
// Until then it counts in aux, so that the locked bytes reported keep
// matching what the system has locked.
func (l *UnmapList) Add(aux *Aux, r *osmem.Region) {
	*l = append(*l, r)
	aux.Add(r, 1)
}

// Take removes from l the smallest region whose memory is at least n
// bytes and at most most, each rounded up to whole pages as osmem.Map
// rounds a region's size, and returns it, or nil if l has none. It stays
// counted in the Aux, as Adopt expects.
func (l *UnmapList) Take(n, most int) *osmem.Region {
	n, most = roundPage(n), roundPage(most)
	best := -1
	for i, r := range *l {
		if len(r.Data) >= n && len(r.Data) <= most && (best < 0 || len(r.Data) < len((*l)[best].Data)) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	r := (*l)[best]
	last := len(*l) - 1
	(*l)[best] = (*l)[last]
	(*l)[last] = nil
	*l = (*l)[:last]
	return r
}

// UnmapAll unmaps every region in l and empties it, and returns the
// errors of the unmaps the system refused. A region it refuses stays
// mapped and counted, wiped, as it was released, until aux's Retry.
func (l *UnmapList) UnmapAll(aux *Aux) error {
	var errs []error
	for i, r := range *l {
		if err := aux.UnmapArena(r); err != nil {
			errs = append(errs, err)
		}
		(*l)[i] = nil
	}
	*l = (*l)[:0]
	return errors.Join(errs...)
}
