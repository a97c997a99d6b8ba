package store

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// Idle regions are the wiped regions of emptied arenas, still mapped,
// locked and excluded from dumps as they were, which the next arena a
// shard maps reuses: entries that come and go made compaction empty an
// arena and the next Alloc map one of the same size, and the munmap, mmap,
// mlock and first-touch faults of each such pair took a third of the time
// of an Alloc and Free of up to 64 KiB.
//
// They hold memory the system's limits count (RLIMIT_MEMLOCK, the
// mappings, secret memory's descriptors), so a refusal anywhere in the
// process gives back every Shuffler's before it counts: GiveBackIdle.
// They are an Aux's, not a shard's, so that giving them back takes no
// shard lock: kept under each shard's lock, a region of a shard busy at
// that moment would stay, and the refusal, of an Alloc, a Shuffle, a
// rotation or a background cycle's spare, fail with the room it holds
// (the root package's TestIdleGivenBack).

// PutIdle counts in r, the wiped region of an emptied arena, and holds it
// for the next TakeIdle. Past IdleCap regions it unmaps the oldest.
func (x *Aux) PutIdle(r *osmem.Region) {
	x.Add(r, 1)
	x.idleMu.Lock()
	x.idle = append(x.idle, r)
	x.idleN.Add(int64(len(r.Data)))
	var old *osmem.Region
	if len(x.idle) > max(x.IdleCap, 1) {
		old = x.idle[0]
		x.idle = slices.Delete(x.idle, 0, 1)
		x.idleN.Add(-int64(len(old.Data)))
	}
	x.idleMu.Unlock()
	if old != nil {
		_ = x.UnmapArena(old) // one refused stays counted, for Retry
	}
}

// TakeIdle returns the smallest idle region of n to twice n bytes (n
// rounded as osmem.Map rounds it), counted out, or nil. Up to twice: the
// arenas of entries larger than a shard's usual arena have those entries'
// sizes.
func (x *Aux) TakeIdle(n int) *osmem.Region {
	if x.idleN.Load() == 0 {
		return nil
	}
	n = roundPage(n)
	x.idleMu.Lock()
	best := -1
	for i, r := range x.idle {
		if len(r.Data) >= n && len(r.Data) <= 2*n && (best < 0 || len(r.Data) < len(x.idle[best].Data)) {
			best = i
		}
	}
	if best < 0 {
		x.idleMu.Unlock()
		return nil
	}
	r := x.idle[best]
	x.idle = slices.Delete(x.idle, best, best+1)
	x.idleN.Add(-int64(len(r.Data)))
	x.idleMu.Unlock()
	x.Add(r, -1)
	return r
}

// DropIdle gives back every idle region and reports how many there were:
// to later, when not nil, for the caller to unmap once it has let go of a
// shard lock, else unmapped now. A region the system would not unmap
// stays counted, for Retry.
func (x *Aux) DropIdle(later *UnmapList) int {
	if x.idleN.Load() == 0 {
		return 0
	}
	x.idleMu.Lock()
	rs := x.idle
	x.idle = nil
	x.idleN.Store(0)
	x.idleMu.Unlock()
	if later != nil {
		*later = append(*later, rs...) // counted here already
		return len(rs)
	}
	for _, r := range rs {
		_ = x.UnmapArena(r)
	}
	return len(rs)
}

// IdleBytes is the bytes of the idle regions.
func (x *Aux) IdleBytes() int64 { return x.idleN.Load() }

// EachIdle calls f with each idle region, holding them while it runs,
// and returns the locked and unlocked bytes counted, read while it still
// holds them: a region joins the pool once counted in (PutIdle) and is
// counted out once it has left (TakeIdle, DropIdle), so every region f
// saw is in those counts. Counts read after EachIdle returns may already
// lack one that DropIdle took meanwhile, which needs no shard lock: Close
// drops its idle regions once it has let go of its shards, and
// GiveBackIdle drops any Shuffler's from any goroutine.
func (x *Aux) EachIdle(f func(r *osmem.Region)) (locked, unlocked int64) {
	x.idleMu.Lock()
	defer x.idleMu.Unlock()
	for _, r := range x.idle {
		f(r)
	}
	return x.Locked(), x.Unlocked()
}

// pools are the Auxes of the process whose idle regions GiveBackIdle gives
// back, from RegisterIdle to UnregisterIdle. drainMu serializes the
// give-backs, and drains counts those that unmapped something, once their
// unmaps are done.
var pools struct {
	sync.Mutex
	m       map[*Aux]struct{}
	drainMu sync.Mutex
	drains  atomic.Uint64
}

// RegisterIdle makes x's idle regions ones GiveBackIdle gives back.
func RegisterIdle(x *Aux) {
	pools.Lock()
	defer pools.Unlock()
	if pools.m == nil {
		pools.m = make(map[*Aux]struct{})
	}
	pools.m[x] = struct{}{}
}

// UnregisterIdle undoes RegisterIdle; x's owner gives back its own. It
// waits for a give-back under way, which may have taken x's regions and
// not yet unmapped them: a Close that found its pool emptied by one
// returned with a region still mapped and locked, or one the system then
// refused to unmap on the list its last Retry had already been through.
// No give-back that starts later sees x.
func UnregisterIdle(x *Aux) {
	pools.Lock()
	delete(pools.m, x)
	pools.Unlock()
	pools.drainMu.Lock()
	//lint:ignore SA2001 an empty critical section: a wait for the give-back
	pools.drainMu.Unlock()
}

// IdleDrains is the generation GiveBackIdle compares with: read it before
// the attempt whose refusal may call GiveBackIdle.
func IdleDrains() uint64 { return pools.drains.Load() }

// RetryWithIdle calls op, which maps or locks memory, and calls it once
// more if it failed and GiveBackIdle gave back room meanwhile: every
// mapping and lock of a Shuffler goes through it, so that no refusal
// counts for memory idle regions hold.
func RetryWithIdle(op func() error) error {
	gen := IdleDrains()
	err := op()
	if err != nil && GiveBackIdle(gen) {
		err = op()
	}
	return err
}

// GiveBackIdle unmaps the idle regions of every registered Aux, and
// reports whether the attempt that read gen from IdleDrains may now
// succeed where it was refused: this call or another since gen unmapped
// some. Another goroutine's give-back under way when it is called is
// waited for, so that two refusals at once both see the room it makes;
// with none, and none since gen, a second attempt would fail as the first.
func GiveBackIdle(gen uint64) bool {
	pools.drainMu.Lock()
	defer pools.drainMu.Unlock()
	pools.Lock()
	var xs []*Aux
	for x := range pools.m {
		if x.IdleBytes() > 0 {
			xs = append(xs, x)
		}
	}
	pools.Unlock()
	n := 0
	for _, x := range xs {
		n += x.DropIdle(nil)
	}
	if n > 0 {
		pools.drains.Add(1)
	}
	return pools.drains.Load() != gen
}

// roundPage is n rounded up as osmem.Map rounds a region's size.
func roundPage(n int) int {
	p := osmem.PageSize()
	return (n + p - 1) &^ (p - 1)
}
