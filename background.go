package memshuffle

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// Background shuffling moves entries a little at a time. A cycle visits
// every slot of every shard once, in a random order per shard, and moves
// each unrented entry it finds into fresh arena space; a step moves at most
// stepBytes or stepEntries under one shard lock and then lets go, so a Rent
// or Return never waits for more than one step, whatever the amount of data.
// An entry larger than stepBytes moves alone, in one step as long as its
// copy takes. A step of 64 KiB holds the lock for 40-120 µs on the machine
// of BENCHMARKS.md (a copy and a wipe of the entry, and the bookkeeping of
// the space it leaves); steps of 128 KiB held it up to 160 µs.
const (
	stepBytes   = 64 << 10
	stepEntries = 256
)

// ErrBackgroundRunning is returned by StartBackgroundShuffle when a
// background shuffler already runs on the Shuffler.
var ErrBackgroundRunning = errors.New("memshuffle: background shuffle already running")

// WithBackgroundShuffle starts a background shuffler in New, as
// StartBackgroundShuffle does, running until Close or Purge. A negative
// interval fails with ErrInvalidOption.
func WithBackgroundShuffle(interval time.Duration) Option {
	return optionFunc(func(c *config) error {
		if interval < 0 {
			return fmt.Errorf("%w: WithBackgroundShuffle(%v): negative interval", ErrInvalidOption, interval)
		}
		c.background, c.bgInterval = true, interval
		return nil
	})
}

// StartBackgroundShuffle starts a goroutine that relocates every unrented
// entry once per cycle, in small steps, and starts a cycle every interval
// (an interval of 0 runs cycles back to back; a negative one is refused
// with ErrInvalidOption, a nil ctx with ErrNilArgument). A step holds one shard's
// lock while it moves up to 64 KiB, or a single larger entry, into memory
// mapped before it took the lock; only an entry too large to share an
// arena, or a system that refused the memory ahead of time, has a step map
// under the lock. Each step also wipes entries whose expiry has passed,
// within the same 64 KiB (or one larger entry); when more expire at once,
// the next steps go on.
//
// The background shuffler takes little of the machine: after every
// 100 µs of work, counted across cycles, it sleeps at least as long (up to
// 10 ms; about a millisecond in practice, the granularity of Go's timers
// on Linux), and it lets a goroutine that waited for a shard's lock run
// before it does anything else. A caller's Rent or Return therefore never
// waits for more than one step, and its goroutine keeps its CPU. On the
// two-core machine of BENCHMARKS.md a cycle over 256 MiB of 64 KiB entries
// takes about 3 seconds (3.00 to 3.28 s in BenchmarkBackgroundCycle,
// bench/NOTES.md), and longer while a caller runs Rent and Return flat
// out: the 3-second runs of BenchmarkRentReturnDuringBackgroundShuffle
// finish no cycle, or one (BENCHMARKS.md, bench/NOTES.md). In a process whose
// goroutines keep every processor busy, each sleep lasts until the Go
// scheduler comes back to the shuffler, and a cycle takes that much
// longer, many times as long as without them. The shuffler gives way
// rather than compete with the goroutines that use the Shuffler.
//
// It stops when ctx is done, when stop is called, or at Close or Purge,
// whichever comes first (ctx's Done is asked once, by this call: a panic
// there is returned as an error matching ErrPanicked; its Err, only once
// Done is closed, and its Value, are asked through a guard that recovers
// their panics; Value only while this call runs, and ctx's code may
// Purge or Close the Shuffler); stop waits for the goroutine to end
// and may be called more than once, also from a WithLogger handler: the
// background shuffler's events reach the logger from a goroutine other
// than the one stop waits for. Only one background shuffler runs at a
// time (ErrBackgroundRunning); once one has stopped, by any of these means,
// another can be started.
func (s *Shuffler) StartBackgroundShuffle(ctx context.Context, interval time.Duration) (stop func(), err error) {
	if !s.made() || s.closed.Load() {
		return nil, ErrClosed
	}
	if interval < 0 {
		return nil, fmt.Errorf("%w: negative interval %v", ErrInvalidOption, interval)
	}
	if ctx == nil {
		return nil, fmt.Errorf("%w: nil context", ErrNilArgument)
	}
	// Asked before closeMu is taken: ctx is the caller's code.
	parentDone, err := ctxDone(ctx)
	if err != nil {
		return nil, err
	}
	// Derived from the caller's context through guardedCtx, which asks
	// it for Done only once (above), for Err with its panic recovered,
	// and for Value only here: context.WithCancel of the caller's context
	// itself called its Done and Err at once (a panic, or a done context
	// with no Err, made this call panic) and, for a context of the
	// caller's own type, again from a goroutine of the context package
	// once it was done, where a panic ended the process. It is made
	// before closeMu is taken, as WithCancel asks Value and a done
	// context's Err at once, and code of the caller's that purged the
	// Shuffler under closeMu waited for it for ever (see Value).
	values := new(frozenValues)
	bgCtx, cancel := context.WithCancel(guardedCtx{ctx, parentDone, values})
	values.freeze()
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed.Load() {
		cancel()
		return nil, ErrClosed
	}
	if s.bgCancel != nil {
		select {
		case <-s.bgDone:
			// Its context ended and it stopped on its own; its stop
			// function, if still called, leaves the new one alone.
			s.bgCancel()
			s.bgCancel, s.bgDone = nil, nil
		default:
			cancel()
			return nil, ErrBackgroundRunning
		}
	}
	done := make(chan struct{})
	s.bgCancel, s.bgDone = cancel, done
	go s.background(bgCtx, interval, done)
	return func() {
		cancel()
		<-done
		s.closeMu.Lock()
		if s.bgDone == done {
			s.bgCancel, s.bgDone = nil, nil
		}
		s.closeMu.Unlock()
	}, nil
}

// guardedCtx is a context of the caller's as StartBackgroundShuffle hands
// it to context.WithCancel: its Done channel, asked for once, its Err with
// a panic turned into an error (ErrPanicked) and never nil once done (see
// ctxErr), and its values as they were while WithCancel ran.
type guardedCtx struct {
	context.Context
	done   <-chan struct{}
	values *frozenValues
}

func (g guardedCtx) Done() <-chan struct{} { return g.done }

func (g guardedCtx) Err() error {
	select {
	case <-g.done:
		return ctxErr(g.Context)
	default:
		return nil
	}
}

// Value asks the caller's context until freeze, with a panic turned into
// nil, and afterwards answers what it answered then. The background
// shuffler reads no value; the context package looks through Value for a
// cancelable parent to join (so that cancelling a standard context stops
// the shuffler at once) and, when the shuffler's context is canceled, to
// leave it again, which stopBackground does under closeMu. Asked there,
// code of the caller's that purged the Shuffler waited for closeMu for
// ever, and every later Close and Purge with it.
func (g guardedCtx) Value(key any) any {
	v := g.values
	// Held while the caller's Value runs, so that none runs after freeze:
	// the context package's goroutine may ask too, once the caller's
	// context is done. Nothing the caller's code can reach takes it.
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.frozen {
		val := callerValue(g.Context, key)
		v.asked = append(v.asked, [2]any{key, val})
		return val
	}
	for _, kv := range v.asked {
		if kv[0] == key {
			return kv[1]
		}
	}
	return nil
}

// frozenValues is what a guardedCtx's Value answered before freeze: the
// keys are the context package's own, which it compares with ==.
type frozenValues struct {
	mu     sync.Mutex
	frozen bool
	asked  [][2]any // key, value
}

func (v *frozenValues) freeze() {
	v.mu.Lock()
	v.frozen = true
	v.mu.Unlock()
}

// callerValue is ctx.Value(key) with a panic turned into nil.
func callerValue(ctx context.Context, key any) (v any) {
	defer func() {
		if recover() != nil {
			v = nil
		}
	}()
	return ctx.Value(key)
}

// stopBackground ends the background shuffler, if any; the caller holds
// closeMu.
func (s *Shuffler) stopBackground() {
	if s.bgCancel != nil {
		s.bgCancel()
		<-s.bgDone
		s.bgCancel, s.bgDone = nil, nil
	}
}

func (s *Shuffler) background(ctx context.Context, interval time.Duration, done chan<- struct{}) {
	defer close(done)
	// One pacer for every cycle: cycles run back to back over a few
	// entries each take far less than a burst, and a pacer of their own
	// would never rest.
	pace := newPacer()
	// The events a cycle raises go to the logger from a goroutine of
	// their own: a handler may call the stop function, which waits for
	// this goroutine, and run here it would wait for itself.
	defer s.flushLogElsewhere()
	for {
		if !s.cycle(ctx, &pace) {
			return
		}
		s.flushLogElsewhere()
		s.tally.bgCycles.Add(1)
		if interval > 0 {
			waited := time.Now()
			t := time.NewTimer(interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			pace.waited(time.Since(waited))
		} else if ctx.Err() != nil {
			return
		}
	}
}

// cycle runs one background cycle, resting as pace says; it reports false
// when it was stopped.
//
// Arenas a step empties are released into a list and unmapped after the
// step lets go of the lock. The fresh arena a step moves entries into is
// mapped ahead, with no lock held, as a spare region of the cycle's own:
// only the step adopts it (see adoptSpare), and no other path sees it, so
// what the background shuffler holds never changes what an Alloc, Return
// or Shuffle does.
//
// No step maps memory while it holds the shard lock: mapping and locking
// fresh memory faults in and zeroes every page of it, 0.7 to 5 ms for
// 2 MiB on a loaded two-core machine, and every Rent of the shard would
// wait for it. A step that needs a fresh arena and has no spare large
// enough (the first step of a cycle, or a second fresh arena in one step)
// stops before that entry and says what it needs; the cycle maps it with
// no lock held, and the next step goes on. Only when the system refused
// that memory does the next step map under the lock, as any allocation
// would: without memory it fails there too, and a compaction step stands
// in.
func (s *Shuffler) cycle(ctx context.Context, pace *pacer) bool {
	var later store.UnmapList
	for i := range s.shards {
		// Drawing a large shard's order takes milliseconds: stop, Close
		// and Purge should not wait for every shard's.
		if ctx.Err() != nil {
			return false
		}
		sh := &s.shards[i]
		if !sh.lockOpen() {
			return false
		}
		n, rng, order := int(sh.Slots.Len()), sh.forkRNG(), sh.bgOrder
		sh.bgOrder = nil
		sh.mu.Unlock()
		// The order is drawn with no lock held: for a shard of a million
		// entries that takes 8 to 14 ms, which every Rent of the shard
		// waited for, once a cycle. startCycle adds the slots made
		// meanwhile.
		order = permute(rng, order, n)
		if afterCycleOrder != nil {
			afterCycleOrder(sh)
		}
		if !sh.lockOpen() {
			return false
		}
		sh.startCycle(order, &later)
		sh.unlockYieldQuiet()
		_ = later.UnmapAll(&s.aux) // a refusal waits in s.aux for a retry
	}
	spares := make([]*osmem.Region, len(s.shards))
	refused := make([]bool, len(s.shards)) // the system refused the shard's last spare
	// A cycle ends with no spare left mapped, stopped or not: a Shuffler
	// whose entries are gone maps nothing.
	defer func() {
		for _, r := range spares {
			if r != nil {
				_ = s.aux.Unmap(r)
			}
		}
	}()
	for busy := true; busy; {
		busy = false
		for i := range s.shards {
			if ctx.Err() != nil {
				return false
			}
			sh := &s.shards[i]
			if !sh.lockOpen() {
				return false
			}
			start := time.Now()
			more, want := sh.step(&later, &spares[i], refused[i])
			held := time.Since(start)
			if want == 0 && spares[i] == nil && more {
				want = sh.ArenaSize(stepBytes)
			}
			sh.unlockYieldQuiet()
			s.noteStep(held)
			busy = busy || more
			// Rests between the pieces of work, not only after them all: a
			// step, an unmap and the first piece of a spare back to back
			// kept a caller that shares the CPU waiting for all three.
			pace.rest()
			_ = later.UnmapAll(&s.aux) // a refusal waits in s.aux for a retry
			// Mapping memory can stall (page zeroing, huge-page compaction):
			// do it here, with no lock held, for the shard's next step.
			if r := spares[i]; want > 0 && r != nil && len(r.Data) < want {
				_ = s.aux.Unmap(r)
				spares[i] = nil
			}
			if want > 0 && spares[i] == nil {
				var err error
				spares[i], err = s.mapSpare(ctx, want, pace)
				refused[i] = err != nil
			}
			pace.rest()
		}
	}
	// A cycle ends with no empty arena left mapped either.
	for i := range s.shards {
		sh := &s.shards[i]
		if !sh.lockOpen() {
			return false
		}
		_ = sh.releaseEmpty(nil, &later)
		sh.unlockYieldQuiet()
		_ = later.UnmapAll(&s.aux) // a refusal waits in s.aux for a retry
	}
	_ = s.aux.Retry()
	return true
}

// unlockYield lets go of the shard lock and, when a goroutine waits for
// it, lets that goroutine run at once. Unlock makes such a goroutine
// runnable on the calling goroutine's P; the system calls that follow a
// step (unmapping, mapping) would keep it there, runnable but not running,
// until the runtime noticed: a Rent waited up to milliseconds after the
// step had ended. With no one waiting there is no one to hand over to, and
// the yield would only send the caller to the back of the run queue.
func (sh *shard) unlockYield() {
	sh.mu.Unlock()
	// A tampered entry a rotation batch found, a refused lock.
	sh.s.flushLog()
	sh.yieldToWaiter()
}

// unlockYieldQuiet is unlockYield for a background cycle, which leaves the
// events it raised queued: the background goroutine hands them to a
// goroutine of their own after the cycle (see background).
func (sh *shard) unlockYieldQuiet() {
	sh.mu.Unlock()
	sh.yieldToWaiter()
}

// yieldToWaiter lets a goroutine waiting for the shard's lock, if any, run
// at once (see unlockYield).
func (sh *shard) yieldToWaiter() {
	if sh.mu.Contended() {
		runtime.Gosched()
	}
}

// afterCycleOrder, when set by a test, runs once a cycle has drawn a
// shard's order, before it takes the shard's lock to start.
var afterCycleOrder func(sh *shard)

// forkRNG returns a generator of its own for a background cycle, seeded
// from the shard's, so that the cycle can draw its order with no lock held
// while Shuffle uses the shard's.
func (sh *shard) forkRNG() *mrand.Rand {
	var seed [32]byte
	for k := 0; k < len(seed); k += 8 {
		binary.LittleEndian.PutUint64(seed[k:], sh.rng.Uint64())
	}
	return mrand.New(mrand.NewChaCha8(seed))
}

// startCycle sets order, a permutation of the shard's first len(order)
// slots, as the order in which this cycle visits the shard's slots, and
// sends what the cycle moves to a fresh arena. An empty current arena goes
// to later.
//
// Slots made since order was drawn hold entries in arenas from before the
// cycle, the current one among them, which the cycle must empty like the
// rest: they join the order (see joinOrder).
func (sh *shard) startCycle(order []uint32, later *store.UnmapList) {
	sh.bgOrder = joinOrder(sh.rng, order, sh.Slots.Len())
	sh.bgPos = 0
	sh.relock()
	sh.Arenas.ReplaceCur(nil, later)
}

// joinOrder extends order, a permutation of 0 to len(order)-1, to one of 0
// to n-1: each slot joins at a uniformly random place, a step of the
// inside-out Fisher-Yates shuffle, so that a uniform order stays uniform.
func joinOrder(rng *mrand.Rand, order []uint32, n uint32) []uint32 {
	for k := uint32(len(order)); k < n; k++ {
		order = append(order, k)
		j := rng.Uint32N(k + 1)
		order[k], order[j] = order[j], order[k]
	}
	return order
}

// step moves the next few entries of the cycle; it reports whether any
// remain. The arenas it empties go to later. When an entry needs a fresh
// arena, step takes *spare, if large enough, and sets *spare to nil;
// without one it stops before the entry and reports the size of arena it
// needs as want, unless spareRefused says the system refused the last
// spare: then the entry's move maps one under the lock, as any allocation
// would.
func (sh *shard) step(later *store.UnmapList, spare **osmem.Region, spareRefused bool) (more bool, want int) {
	// Entries that expire together (made together with one TTL) are wiped
	// a step's worth at a time: wiping them all at once held the lock for
	// as long as that took, hundreds of milliseconds for 200 MB.
	wiped, count, swept := sh.sweepSome(later, sh.s.now(), stepBytes, stepEntries)
	if !swept {
		return true, 0
	}
	budget := stepBytes - wiped
	var moved uint64
	for sh.bgPos < len(sh.bgOrder) && budget > 0 && count < stepEntries {
		i := sh.bgOrder[sh.bgPos]
		if i >= sh.Slots.Len() {
			sh.bgPos++
			continue
		}
		sl := sh.Slots.At(i)
		if n := sh.freshArena(sl); n > 0 {
			if r := *spare; r != nil && len(r.Data) >= n {
				// When the arena set is full the spare stays the cycle's,
				// and Relocate, which could not map either, fails below.
				sh.adoptSpare(spare, later)
			} else if !spareRefused {
				want = n
				break
			}
		}
		sh.bgPos++
		// Without memory the entry stays where it is, safe, and a
		// compaction step into existing holes stands in; the next cycle
		// tries again.
		m, ok := sh.Relocate(sl, later)
		if !ok {
			budget -= int(sh.Compact(later)) // counted in bytesMoved by compact
			count++
			continue
		}
		if m > 0 {
			moved += m
			budget -= int(m)
			count++
		}
	}
	sh.s.tally.bytesMoved.Add(moved)
	if sh.bgPos >= len(sh.bgOrder) {
		sh.bgOrder = sh.bgOrder[:0]
		if cap(sh.bgOrder) > 1<<16 {
			sh.bgOrder = nil
		}
		return false, 0
	}
	return true, want
}

// mapSpare maps a spare arena of n bytes for a background step, as mapAux
// does, but has the system back its pages a piece at a time with rests in
// between: mapping and locking in one call zeroes every page in the kernel
// in one go, milliseconds for a few MiB, during which a goroutine that
// shares the CPU waits. For the same reason the spare has no huge pages:
// touching one zeroes 2 MiB at once. Until a step adopts the spare it
// holds only zeros, and it is excluded from core dumps and forked children
// from the start. Once ctx is done it stops, unmaps what it mapped and
// returns ctx's error: the rests make backing a spare of the largest arena
// size take tens of milliseconds, and stop, Close and Purge should not
// wait for a spare that no step will use.
//
// The spare is locked before any page of it is backed, where the system
// can lock pages as they are first touched (osmem.LockOnFault): the call
// backs nothing, and each piece is then locked as it is backed. Locking
// it after backing it, as elsewhere, kept the background thread in one
// mlock for 0.2-0.4 ms per 2 MiB even with every page present, and a
// caller whose CPU that thread was woken on waited for all of it (see
// bench/NOTES.md). The lock counts in full from the call on, in the
// system's count and in the Shuffler's alike.
//
// Secret memory has no lock step: the kernel locks the whole mapping, and
// charges it to RLIMIT_MEMLOCK, when it is mapped, and refuses mlock; it
// is counted from then on. Its pages are backed ahead all the same: a
// fault of secret memory also takes the page out of the kernel's direct
// map, and a step writing into a spare not yet backed held the shard lock
// for milliseconds.
func (s *Shuffler) mapSpare(ctx context.Context, n int, pace *pacer) (*osmem.Region, error) {
	var r *osmem.Region
	var err error
	if s.cfg.secret {
		r, err = s.mapAux(n)
	} else {
		err = store.RetryWithIdle(func() (err error) {
			r, err = osmem.Map(n, osmem.Flags{SmallPages: true})
			return err
		})
		if err != nil {
			err = fmt.Errorf("%w: %w", ErrOutOfMemory, err)
		}
	}
	if err != nil {
		return nil, err
	}
	counted := s.cfg.secret
	unmap := func() {
		if counted {
			_ = s.aux.Unmap(r)
		} else {
			_ = osmem.Unmap(r)
		}
	}
	if err := ctx.Err(); err != nil {
		unmap()
		return nil, err
	}
	lockLater := false
	if !s.cfg.secret {
		err := s.lockCounted(r, osmem.LockOnFault)
		lockLater = errors.Is(err, osmem.ErrNoOnFault)
		if err != nil && !lockLater {
			unmap()
			return nil, err
		}
		counted = !lockLater
	}
	page := os.Getpagesize()
	for off := 0; off < len(r.Data); off += spareChunk {
		pace.rest()
		if err := ctx.Err(); err != nil {
			unmap()
			return nil, err
		}
		// The pages are zero: writing a zero into each changes nothing
		// but makes the system back it now.
		for i := off; i < min(off+spareChunk, len(r.Data)); i += page {
			r.Data[i] = 0
		}
	}
	if lockLater {
		if err := s.lockCounted(r, osmem.Relock); err != nil {
			unmap()
			return nil, err
		}
	}
	return r, nil
}

// lockCounted locks the spare r with lock, as lockSpare does (not at all
// under LockNone), and counts it in, unless the lock failed or was put
// off (osmem.ErrNoOnFault). The lock and the count are one step for a
// reader of both (Aux.Quiet): apart, Stats.LockedBytes read between them
// fell a spare short of VmLck.
func (s *Shuffler) lockCounted(r *osmem.Region, lock func(*osmem.Region) error) (err error) {
	s.aux.Change(func() {
		if s.cfg.lock != LockNone {
			err = s.lockSpare(r, lock)
		}
		if err == nil {
			s.aux.Add(r, 1)
		}
	})
	return err
}

// lockSpare locks the spare r with lock: osmem.LockOnFault before any page
// is backed, or osmem.Relock after, where the system has no lock on fault
// (osmem.ErrNoOnFault, returned as is). A refusal is an error for
// LockStrict; else r stays unlocked, as any arena the system would not
// lock.
func (s *Shuffler) lockSpare(r *osmem.Region, lock func(*osmem.Region) error) error {
	if beforeSpareLock != nil {
		beforeSpareLock(r)
	}
	var err error // the last attempt's
	_ = store.RetryWithIdle(func() error {
		if err = lock(r); errors.Is(err, osmem.ErrNoOnFault) {
			return nil // not a refusal: the caller locks it later
		}
		return err
	})
	if err == nil || errors.Is(err, osmem.ErrNoOnFault) {
		return err
	}
	s.lockFailed(len(r.Data), err)
	if s.cfg.lock == LockStrict {
		return fmt.Errorf("%w: %s: %w", ErrLockFailed, lockLimitText(err), err)
	}
	r.LockErr = err
	return nil
}

// beforeSpareLock, when set by a test, sees every spare just before the
// background shuffler locks it.
var beforeSpareLock func(r *osmem.Region)

// spareChunk is how much of a spare mapSpare backs between rests.
const spareChunk = 64 << 10

// pacer keeps the background shuffler from running flat out. After every
// burst of pacerBurst of work it sleeps as long as the burst took, up to
// pacerMax, so it uses at most about half of one CPU unless a single step
// outlasts pacerMax. On Linux a sleep this short lasts about a
// millisecond, the granularity of Go's timers, so in practice it uses
// about a tenth.
//
// Flat out, it wanted a CPU of its own for as long as a cycle lasted: on a
// machine whose CPUs the callers' goroutines and the runtime's own threads
// already kept busy, the system then shared a CPU between a caller and the
// background shuffler, and a caller that had been switched out waited for
// the next scheduler tick (4 ms at 250 Hz) or longer, with no lock held by
// anyone. A shuffler that sleeps often gives the CPU back within a burst.
type pacer struct {
	since time.Time        // when the current burst began
	rests int              // how many times it slept
	clock func() time.Time // time.Now when nil; tests give one that steps
}

const (
	pacerBurst = 100 * time.Microsecond
	pacerMax   = 10 * time.Millisecond // the longest rest, after a long copy
)

func newPacer() pacer { return pacer{since: time.Now()} }

// rest sleeps if the burst of work since the last rest has lasted
// pacerBurst or more. A nil pacer never rests.
func (p *pacer) rest() {
	if p == nil {
		return
	}
	now := p.now()
	if worked := now.Sub(p.since); worked >= pacerBurst {
		time.Sleep(min(worked, pacerMax))
		p.restart()
		p.rests++
		if afterRest != nil {
			afterRest(p.since.Sub(now))
		}
	}
}

// afterRest, when set by a test, runs after every rest of a pacer with
// how long it lasted.
var afterRest func(time.Duration)

// restart begins a new burst now: what came before was no work.
func (p *pacer) restart() { p.since = p.now() }

// waited counts d, just spent waiting for the next cycle or rotation, as
// rest: as much as the burst so far needs, a new burst begins; a shorter
// wait (a tiny interval) only leaves out the time it took, and the work
// on either side of it adds up to the same burst.
func (p *pacer) waited(d time.Duration) {
	if p == nil {
		return
	}
	if worked := p.now().Sub(p.since) - d; d >= min(worked, pacerMax) {
		p.restart()
	} else {
		p.since = p.since.Add(d)
	}
}

func (p *pacer) now() time.Time {
	if p.clock != nil {
		return p.clock()
	}
	return time.Now()
}

// freshArena is the size of the fresh arena Relocate would map for the
// entry in sl: one when the entry is live, not in the current arena,
// shares arenas, and does not fit in the current one; else 0.
func (sh *shard) freshArena(sl *store.Slot) int {
	if sl.State() != store.StateLive || sh.Arenas.Get(sl.Arena()) == sh.Arenas.Cur() {
		return 0
	}
	size, align := int(sl.Size)+sh.Overhead(), sl.Align()
	if sh.Oversize(size, align) || sh.Arenas.Fits(sh.Arenas.Cur(), size, align) {
		return 0
	}
	return sh.EntryArenaSize(size)
}

// adoptSpare makes *spare the current arena and sets *spare to nil,
// unless the shard's arena set is full: then *spare stays the cycle's.
func (sh *shard) adoptSpare(spare **osmem.Region, later *store.UnmapList) {
	a, err := sh.Arenas.Adopt(*spare)
	if err != nil {
		return
	}
	*spare = nil
	sh.Arenas.ReplaceCur(a, later)
}

// noteStep records how long one step held a shard.
func (s *Shuffler) noteStep(d time.Duration) {
	s.tally.bgSteps.Add(1)
	storeMax(&s.tally.bgStepMax, int64(d))
	if afterStep != nil {
		afterStep(d)
	}
}

// afterStep, when set by a benchmark before any background shuffler
// starts, sees how long every step held its shard lock.
var afterStep func(held time.Duration)
