package memshuffle

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// Alloc makes a new entry of n zeroed elements of T and returns its Handle.
// The entry is encrypted from the moment it exists. T must hold no Go
// pointers (ErrUnsupportedType); n must be at least 1 and n elements must fit
// in MaxEntrySize (ErrInvalidSize). The entry keeps its alignment (see
// EntryAlign) for its whole life. It goes into space an earlier entry
// released when some fits, else into new arena space. When the system
// refuses memory, or a lock under LockStrict, Alloc first gives back what it
// can in bounded work (empty arenas, a few compaction steps, the space of up
// to 1,024 expired entries) and tries again; then it puts the entry in room
// the arenas of another shard already have, and fails with ErrOutOfMemory
// or ErrLockFailed only when none has room. Under LockBestEffort, before
// an entry goes into a new arena the system would not lock, Alloc gives
// back the emptied arenas a peak left larger than their shards now map,
// and locks the arena if that made room (see LockBestEffort).
func Alloc[T any](s *Shuffler, n int) (Handle, error) {
	// T's size and alignment as constants, which every type of T's shape
	// shares: for bytes the bound below needs no hardware divide. Bytes
	// need no type check either (see typeCheck).
	var z *T // a T itself, for a large T, would be zeroed on the heap
	if !isByte[T]() {
		if err := typeCheck[T](); err != nil {
			return Handle{}, err
		}
	}
	size, align := int(unsafe.Sizeof(*z)), int(unsafe.Alignof(*z))
	if n < 1 || uint64(n) > MaxEntrySize/uint64(size) {
		return Handle{}, fmt.Errorf("%w: %d elements of %d bytes", ErrInvalidSize, n, size)
	}
	return s.alloc(n*size, entryAlign(n*size, align))
}

// EntryAlign caps the alignment of entries. An entry of n bytes starts on
// a boundary of the largest power of two that divides n, up to EntryAlign
// bytes, or of its type's alignment if that is stricter: an entry of 48
// bytes is aligned to 16, one of 24 to 8, one of 37 to 1. A Go type's size
// is a multiple of its alignment, so any plain type can view a whole entry
// it divides: a byte entry from ReadFrom, CopyFrom, ReadAll, ReadUntil,
// Random, Clone or Alloc[byte] can be rented as a []uint64 when its size is
// a multiple of 8, or as a []T or a T of 16 bytes when it is a multiple of
// 16. Entries of one size never need padding between them; an entry after
// one of another size may need up to 15 bytes.
const EntryAlign = 16

// entryAlign is the alignment of an entry of size bytes made of elements
// aligned to align: see EntryAlign.
func entryAlign(size, align int) int {
	natural := size & -size // the largest power of two dividing size
	return max(align, min(natural, EntryAlign))
}

// Create makes a new entry holding one zeroed T; see Alloc.
func Create[T any](s *Shuffler) (Handle, error) { return Alloc[T](s, 1) }

func (s *Shuffler) alloc(size, align int) (Handle, error) {
	if !s.made() || s.closed.Load() {
		return Handle{}, ErrClosed
	}
	sh := s.pickShard()
	// An authenticated entry's extent is its size plus the tag, which for
	// the largest sizes overflows a 32-bit int.
	if size > math.MaxInt-sh.Overhead() {
		return Handle{}, fmt.Errorf("%w: %d bytes and a %d-byte tag overflow int", ErrInvalidSize, size, sh.Overhead())
	}
	sh.mu.Lock()
	// Unlocked by hand, not deferred, as in Return.
	sh.Arenas.DeferMap(true)
	h, err := sh.alloc(size, align)
	sh.Arenas.DeferMap(false)
	elsewhere := len(s.shards) > 1 // room other shards have may still be tried
	// A type assertion, not errors.As: the store returns it as it is, and
	// errors.As would move need to the heap, an allocation every Alloc.
	if need, ok := err.(*store.NeedMap); ok {
		// When the system refused the shard's last Alloc and nothing has
		// been unmapped since, room other shards have comes before the
		// mapping, which would most likely be refused again: each refusal
		// costs tens of microseconds (a map, a refused lock, an unmap and a
		// reclaim, twice). Under LockStrict, filling 8 shards up to an
		// 8 MiB limit with entries of 32 bytes took 280 to 380 ms without
		// this, and 50 to 61 ms with it. The mapping is still tried when no
		// shard has room, so no Alloc fails without it.
		//
		// Under LockBestEffort, locked room other shards have comes first
		// once the system would not lock the shard's last new arena (see
		// lockedRoomElsewhere).
		first := elsewhere && sh.refusedAt == s.aux.Freed()+1
		lockedFirst := elsewhere && sh.lockedFirst
		// An entry that needs an arena larger than the shard's usual one
		// (past the quarter EntryArenaSize may add) finding no room says
		// nothing of room for the usual entries: it leaves lockedFirst
		// set. Cleared by one of 17 MiB, it made the next entry of 32
		// bytes map, fail to lock and unmap an arena again.
		usual := lockedFirst && need.N <= sh.ArenaSize(0)*5/4
		sh.mu.Unlock()
		if lockedFirst {
			var ok bool
			if h, ok = s.allocIn(sh, size, align, true); ok {
				err = nil
			} else if usual {
				sh.mu.Lock()
				sh.lockedFirst = false
				sh.mu.Unlock()
			}
		}
		if err != nil && first {
			h, err = s.allocElsewhere(sh, size, align, err)
			elsewhere = false
		}
		if err != nil {
			// Locked room elsewhere, just looked for, is not looked for again.
			h, err = s.allocMapping(sh, need.N, size, align, elsewhere && !lockedFirst)
		}
	} else {
		sh.mu.Unlock()
	}
	if err != nil && elsewhere && (errors.Is(err, ErrLockFailed) || errors.Is(err, ErrOutOfMemory)) {
		h, err = s.allocElsewhere(sh, size, align, err)
	}
	// A refused lock of a new arena, or another goroutine's events.
	if s.out.pending.Load() {
		s.flushLogAllocated(h, err)
	}
	return h, err
}

// allocMapping is alloc once sh, unlocked, found that the entry needs a
// new arena of n bytes. The arena is mapped, and locked, which backs every
// page of it, with the shard unlocked: under the lock, an arena of 16 MiB
// held up every Rent and Return of the shard for 40 ms. Then the alloc
// runs again and adopts the region, unless the arena it now needs is
// another one (others allocated meanwhile): then it maps that one under
// the lock, and the region is unmapped. A refusal is met again under the
// lock, where alloc gives back what it can and tries once more.
//
// Under LockBestEffort, a region the system would not lock, even after
// relockAfterGiveBack, is the last resort: with elsewhere, room other
// shards have comes first (see lockedRoomElsewhere).
func (s *Shuffler) allocMapping(sh *shard, n, size, align int, elsewhere bool) (Handle, error) {
	r, mapErr := s.mapAux(n)
	if mapErr == nil && r.LockErr != nil && s.cfg.lock == LockBestEffort {
		s.relockAfterGiveBack(r)
		if r.LockErr != nil && elsewhere {
			if h, ok := s.lockedRoomElsewhere(sh, r, size, align); ok {
				return h, nil
			}
		}
	}
	sh.mu.Lock()
	// Refused while another Alloc's region is on offer: then r stays
	// this call's, to unmap.
	offered := mapErr == nil && sh.Arenas.Offer(r, n)
	h, err := sh.alloc(size, align)
	if offered {
		r = sh.Arenas.TakeOffer()
	}
	sh.mu.Unlock()
	if r != nil {
		_ = s.aux.Unmap(r) // munmap does not fail for a correct call
	}
	return h, err
}

// allocElsewhere places an entry that sh found no memory for in space
// another shard already holds, free or at the end of its current arena,
// or returns refused, sh's error, when none has room. pickShard spreads entries over the
// shards, so each has room left at the end of its current arena: under an
// 8 MiB lock limit, with entries of 32 KiB, a LockStrict Shuffler was
// refused with up to 900 KiB of its locked arenas unused in other shards
// (TestAllocElsewhere). It maps nothing: the refusal it follows says the
// system has nothing more to give.
func (s *Shuffler) allocElsewhere(sh *shard, size, align int, refused error) (Handle, error) {
	if h, ok := s.allocIn(sh, size, align, false); ok {
		return h, nil
	}
	return Handle{}, refused
}

// allocIn is allocElsewhere, in shards whose arenas are all locked if
// lockedOnly, and reports whether one had room. Such a shard with an
// unlocked region on offer (an Alloc's, encrypting a large entry with the
// shard let go) is passed over too: its alloc would adopt that region as
// the arena the entry needs (TestLockedRoomSkipsUnlockedOffer).
func (s *Shuffler) allocIn(sh *shard, size, align int, lockedOnly bool) (Handle, bool) {
	for k := 1; k < len(s.shards); k++ {
		o := &s.shards[(int(sh.index)+k)%len(s.shards)]
		o.mu.Lock()
		if lockedOnly && (o.Arenas.Unlocked() > 0 || o.Arenas.Locked() == 0 || o.Arenas.OfferUnlocked()) {
			o.mu.Unlock()
			continue
		}
		o.Arenas.DeferMap(true) // a need to map is a refusal, not a mapping
		h, err := o.alloc(size, align)
		o.Arenas.DeferMap(false)
		o.mu.Unlock()
		if err == nil {
			return h, true
		}
	}
	return Handle{}, false
}

// relockAfterGiveBack is for LockBestEffort, when the system would not
// lock r, the new arena an entry needs: before the entry goes into
// unlocked memory, the emptied current arenas that a peak left larger
// than their shards would map now, and locked, are given back, and r is
// locked if that made room; so are the idle regions of arenas that
// emptied since mapRegion gave back those it found (see
// store.GiveBackIdle). Each shard keeps its emptied current arena so
// that entries which come and go do not map and unmap one each time;
// after entries of 900 KiB came and went, those arenas held most of an
// 8 MiB limit, and later entries went unlocked (TestLockedRoomFirst).
//
// It gives back less than a refusal under LockStrict does (every emptied
// current arena, compaction, expired entries): with
// the limit in use, every Alloc that came after an entry freed in another
// shard then mapped an arena, had its lock refused, and dropped that
// shard's, which made Alloc and Free of 32 bytes take 1.5 to 2.1 µs
// instead of 0.12 to 0.19 (4 goroutines, 8 shards). An arena larger than
// its shard would map is given back once; the one mapped after it is not.
// Room another shard has is allocMapping's next resort, which notes it
// (shard.lockedFirst) so that sh does not map, fail to lock and unmap an
// arena each Alloc until the other shards are full (29 µs an Alloc of 32
// bytes, far past the limit, instead of 0.4, when it did).
func (s *Shuffler) relockAfterGiveBack(r *osmem.Region) {
	gen := store.IdleDrains()
	gave := false
	for i := range s.shards {
		o := &s.shards[i]
		if !o.mu.TryLock() {
			continue
		}
		if o.largeIdleCur() {
			o.Arenas.ReplaceCur(nil, nil)
			gave = true
		}
		o.mu.Unlock()
	}
	if store.GiveBackIdle(gen) {
		gave = true
	}
	if gave {
		_ = s.aux.Relock(r) // refused: the entry goes into r unlocked, as before
	}
}

// lockedRoomElsewhere is for LockBestEffort, when the system would not
// lock r, the arena sh needs: the entry goes into room another shard has,
// as under LockStrict, rather than into unlocked memory, and r is
// unmapped. Only shards whose arenas are all locked are tried: where the
// system locks nothing, room elsewhere is unlocked too, and would only
// cost the mapping and unmapping of r. It reports false, leaving r as it
// is, when no such shard has room.
//
// Each goroutine picks its shards by the processor it runs on: one that
// moved to another processor after entries of 900 KiB came and went put
// its next entries in shards whose emptied large arenas then held a few
// entries each, which relockAfterGiveBack cannot give back, and the
// entries after them went unlocked with up to 1.6 MiB of an 8 MiB limit
// locked and unused (TestLockedRoomFirst).
//
// sh then notes it (shard.lockedFirst), so that its next Allocs that need
// an arena take such room first and map nothing (see Shuffler.alloc),
// until none is left. A note that lasts only until something is unmapped,
// as a refusal's (shard.refusedAt), would not do: with another shard's
// entries coming and going, nearly every Alloc of sh mapped and unmapped
// an arena again, 13.8 µs an Alloc of 32 bytes against 1.4 to 1.6
// (TestLockedRoomFirstKeepsUsingIt).
func (s *Shuffler) lockedRoomElsewhere(sh *shard, r *osmem.Region, size, align int) (Handle, bool) {
	h, ok := s.allocIn(sh, size, align, true)
	if !ok {
		return Handle{}, false
	}
	_ = s.aux.Unmap(r) // munmap does not fail for a correct call
	sh.mu.Lock()
	sh.lockedFirst = true
	sh.mu.Unlock()
	return h, true
}

// largeIdleCur reports whether the shard's current arena is one
// relockAfterGiveBack gives back: empty, locked, and larger than the shard
// would map, past the quarter store.EntryArenaSize may add to fit entries
// of one size, so that such a fitted arena, which the next entry of that
// size maps again, is not given back each time. The shard is locked.
func (sh *shard) largeIdleCur() bool {
	c := sh.Arenas.Cur()
	return !sh.closed && c != nil && c.Live == 0 && c.Reg.Locked && len(c.Mem) > sh.ArenaSize(0)*5/4
}

// flushLogAllocated is flushLog after an alloc that made h unless err. A
// handler that ends the goroutine with runtime.Goexit (t.FailNow does)
// never lets the caller have h: the entry is freed then, rather than left
// where no Handle anyone holds can reach it until Close. A handler's panic
// is the logger's to recover (see log).
func (s *Shuffler) flushLogAllocated(h Handle, err error) {
	if err != nil {
		s.flushLogSlow()
		return
	}
	s.flushLogUndoing(func() { _ = s.Free(h) })
}

// alloc is Alloc under the shard lock.
func (sh *shard) alloc(size, align int) (Handle, error) {
	s := sh.s
	if sh.closed {
		return Handle{}, ErrClosed
	}
	if sh.Slots.Full() {
		return Handle{}, fmt.Errorf("%w: slot table of shard %d is full", ErrOutOfMemory, sh.index)
	}
	// The default cipher's direct path (see shortCTR), decided once for
	// the counter values and the encryption.
	k := shortCTR(sh.ciph, size)
	n := sh.sealCounters(k, size)
	base, ok := sh.nextCounters(n)
	if !ok {
		var err error
		if base, err = sh.reserve(n); err != nil {
			return Handle{}, err
		}
	}
	var now int64 // read once, if an expiry needs it
	if s.cfg.ttl > 0 || !sh.Expiries.None() {
		now = s.now()
	}
	if sh.Expiries.DueBy(now) {
		// Entries past their deadline are wiped here too, a few at a
		// time: without a Shuffle or the background shuffler nothing
		// else would until they were looked up, and a Shuffler that
		// gives every entry a TTL and drops its handles grew without
		// bound, unlocked beyond the lock limit or refused under
		// LockStrict.
		sh.sweepSome(nil, now, allocSweepBytes, allocSweepEntries)
	}
	a, off, err := sh.PlaceNew(size+sh.Overhead(), align)
	if err != nil && (errors.Is(err, ErrLockFailed) || errors.Is(err, ErrOutOfMemory)) {
		// Give back what can be given back, more expired entries
		// included, and try once more.
		if !sh.Expiries.None() {
			sh.sweepSome(nil, s.now(), max(size, refusedSweepBytes), refusedSweepEntries)
		}
		sh.reclaim(errors.Is(err, ErrOutOfMemory))
		a, off, err = sh.PlaceNew(size+sh.Overhead(), align)
		if err != nil {
			sh.refusedAt = s.aux.Freed() + 1
		}
	}
	if err != nil {
		return Handle{}, err
	}
	i, sl := sh.Slots.New()
	sl.SetCtr(base)
	sl.SetArena(a.Index)
	sl.Off, sl.Size = uint32(off), uint32(size)
	sl.MakeLive(align)
	sh.Admit(sl, a)

	// The entry is ciphertext before anyone can see it.
	ext := sh.Extent(sl)
	if k != nil && size < unlockedMin { // sealTo, written out
		k.XORShortInPlace(ext, base, &sh.scratch.KS)
	} else if !sh.sealNewInFlight(ext, size, base, i, sl) {
		sh.sealTo(k, ext, ext[:size], base, i, sl)
	}
	// After the encryption, which may have let go of the lock: a sweep
	// meanwhile would have held a deadline of an entry still in flight.
	if ttl := s.cfg.ttl; ttl > 0 {
		sh.Expiries.Set(i, addNanos(now, ttl))
	}
	if sh.Wasteful() {
		sh.Compact(nil)
	}
	return makeHandle(s.id, sh.index, i, sl.Gen()), nil
}

// sealNewInFlight encrypts ext, the new entry of size bytes in slot i,
// under the run at base with the shard unlocked when it is large enough
// for that (see sealInFlight), and reports whether it did. Others map
// arenas meanwhile as they would with the shard unlocked.
func (sh *shard) sealNewInFlight(ext []byte, size int, base uint64, i uint32, sl *store.Slot) bool {
	deferred := sh.Arenas.DeferMap(false)
	defer sh.Arenas.DeferMap(deferred)
	return sh.sealInFlight(ext, size, base, i, sl)
}

// Free wipes the entry at once and invalidates h; no later entry gets a
// Handle equal to h. Later allocations reuse the space, and an arena that
// holds nothing else goes back to the operating system, but for the
// shard's current arena, where its next entries go, and the last arenas
// that emptied, as many as there are shards, which the next new arenas of
// any shard reuse. They stay mapped, wiped, locked as arenas are and
// counted in Stats.MappedBytes, until the next Shuffle or background
// cycle, until as many others have emptied after them, or until the
// system refuses to map or lock memory for the Shuffler, so that a shard
// whose entries come and go does not map and unmap an arena each time.
// When freed space adds up, Free also moves a few entries out of the
// emptiest arenas so that they drain. A rented or viewed entry cannot be
// freed (ErrBusy); a handle freed already, forged or another Shuffler's
// fails with ErrInvalidHandle, and every handle after Close or Purge with
// ErrClosed. An expired entry is freed like any other. The entry's slot,
// 24 bytes of the Go heap that hold no secret, stays in its shard's table
// for the shard's next entry, which takes the lowest free slot. Handles
// name slots, so a slot cannot move while its entry lives, but the table's
// tail shrinks: once the 4,096 slots of its last chunk and of the chunk
// before it are all free, the last chunk goes back to the Go heap
// (Stats.SlotBytes). A slot serves 16,777,215 entries in turn, its
// generation counting them in the Handle; then, so that no Handle repeats,
// it is retired and kept, never reused, for the Shuffler's life. So a
// shard's table grows by 24 bytes every 2^24 Frees of the shard, whatever
// the number of live entries: a few megabytes a year for a service that
// frees a hundred thousand entries a second. One that needs less moves its
// entries to a new Shuffler now and then: a CopyFrom of each entry, rented,
// into the new one (which wipes the rented copy), then Close of the old.
func (s *Shuffler) Free(h Handle) error {
	sh, sl, err := s.lookup(h)
	if err != nil {
		return err
	}
	defer s.flushLog() // after the unlock: compaction may map an arena
	defer sh.mu.Unlock()
	switch sl.State() {
	case store.StateExpired: // already wiped and vacated
	case store.StateLive:
		sh.Drop(sl, nil)
	default:
		return ErrBusy
	}
	sh.freeSlot(h.slot(), sl)
	if sh.Wasteful() {
		sh.Compact(nil)
	}
	return nil
}

// freeSlot bumps the slot's generation so old Handles go stale, and puts
// it on the free list (or retires it, see store.Slots.Free).
func (sh *shard) freeSlot(i uint32, sl *store.Slot) {
	sh.Expiries.Clear(i)
	sh.Slots.Free(i, sl)
}
