package memshuffle

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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
// copy takes.
const (
	stepBytes   = 128 << 10
	stepEntries = 512
)

// ErrBackgroundRunning is returned by StartBackgroundShuffle when a
// background shuffler already runs on the Shuffler.
var ErrBackgroundRunning = errors.New("memshuffle: background shuffle already running")

// WithBackgroundShuffle starts a background shuffler in New, as
// StartBackgroundShuffle does, running until Close.
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
// (an interval of 0 runs cycles back to back). A step holds one shard's
// lock while it moves up to 128 KiB, or a single larger entry. Each step
// also wipes entries whose expiry has passed. It stops when ctx is done, when stop is called,
// or at Close, whichever comes first; stop waits for the goroutine to end
// and may be called more than once. Only one background shuffler runs at a
// time (ErrBackgroundRunning); once one has stopped, by any of these means,
// another can be started.
func (s *Shuffler) StartBackgroundShuffle(ctx context.Context, interval time.Duration) (stop func(), err error) {
	if s == nil || s.closed.Load() || len(s.shards) == 0 {
		return nil, ErrClosed
	}
	if interval < 0 {
		return nil, fmt.Errorf("%w: negative interval %v", ErrInvalidOption, interval)
	}
	if ctx == nil {
		return nil, fmt.Errorf("%w: nil context", ErrNilArgument)
	}
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed.Load() {
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
			return nil, ErrBackgroundRunning
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	s.bgCancel, s.bgDone = cancel, done
	go s.background(ctx, interval, done)
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
	for {
		if !s.cycle(ctx) {
			return
		}
		s.bgCycles.Add(1)
		if interval > 0 {
			t := time.NewTimer(interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			return
		}
	}
}

// cycle runs one background cycle; it reports false when it was stopped.
//
// Arenas a step empties are released into a list and unmapped after the
// step lets go of the lock. The fresh arena a step moves entries into is
// mapped ahead, with no lock held, as a spare region of the cycle's own:
// only the step adopts it (see adoptSpare), and no other path sees it, so
// what the background shuffler holds never changes what an Alloc, Return
// or Shuffle does.
func (s *Shuffler) cycle(ctx context.Context) bool {
	var later store.UnmapList
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.closed {
			sh.mu.Unlock()
			return false
		}
		sh.startCycle(&later)
		sh.mu.Unlock()
		later.UnmapAll(&s.aux)
	}
	spares := make([]*osmem.Region, len(s.shards))
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
			sh.mu.Lock()
			if sh.closed {
				sh.mu.Unlock()
				return false
			}
			start := time.Now()
			more := sh.step(&later, &spares[i])
			held := time.Since(start)
			want := 0
			if spares[i] == nil && more {
				want = sh.ArenaSize(stepBytes)
			}
			sh.mu.Unlock()
			s.noteStep(held)
			busy = busy || more
			later.UnmapAll(&s.aux)
			// Mapping memory can stall (page zeroing, huge-page compaction):
			// do it here, with no lock held, for the shard's next step.
			if want > 0 {
				spares[i], _ = s.mapAux(want)
			}
			// Let goroutines waiting for this shard in before the next step.
			runtime.Gosched()
		}
	}
	// A cycle ends with no empty arena left mapped either.
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.closed {
			sh.mu.Unlock()
			return false
		}
		_ = sh.releaseEmpty(nil, &later)
		sh.mu.Unlock()
		later.UnmapAll(&s.aux)
	}
	return true
}

// startCycle draws the order in which this cycle visits the shard's slots
// and sends what it moves to a fresh arena. An empty current arena goes to
// later.
func (sh *shard) startCycle(later *store.UnmapList) {
	sh.bgOrder = sh.permutation(sh.bgOrder, int(sh.Slots.Len()))
	sh.bgPos = 0
	sh.relock()
	sh.Arenas.ReplaceCur(nil, later)
}

// step moves the next few entries of the cycle; it reports whether any
// remain. The arenas it empties go to later. When an entry needs a fresh
// arena, step takes *spare, if large enough, instead of mapping one under
// the lock, and sets *spare to nil.
func (sh *shard) step(later *store.UnmapList, spare **osmem.Region) bool {
	sh.sweepExpired(later)
	budget, count := stepBytes, 0
	var moved uint64
	for sh.bgPos < len(sh.bgOrder) && budget > 0 && count < stepEntries {
		i := sh.bgOrder[sh.bgPos]
		sh.bgPos++
		if i >= sh.Slots.Len() {
			continue
		}
		// Without memory the entry stays where it is, safe, and a
		// compaction step into existing holes stands in; the next cycle
		// tries again.
		sl := sh.Slots.At(i)
		sh.adoptSpare(sl, spare, later)
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
	sh.s.bytesMoved.Add(moved)
	if sh.bgPos >= len(sh.bgOrder) {
		sh.bgOrder = sh.bgOrder[:0]
		if cap(sh.bgOrder) > 1<<16 {
			sh.bgOrder = nil
		}
		return false
	}
	return true
}

// adoptSpare makes *spare the current arena when the entry in sl would
// be relocated into a fresh arena of at most the spare's size, as
// Relocate would map one: the entry is live, not in the current arena,
// shares arenas, and does not fit in the current one. Anything else
// leaves *spare to the cycle.
func (sh *shard) adoptSpare(sl *store.Slot, spare **osmem.Region, later *store.UnmapList) {
	r := *spare
	if r == nil || sl.State() != store.StateLive || sh.Arenas.Get(sl.Arena()) == sh.Arenas.Cur() {
		return
	}
	size, align := int(sl.Size)+sh.Overhead(), sl.Align()
	if sh.Oversize(size, align) || sh.Arenas.Fits(sh.Arenas.Cur(), size, align) || len(r.Data) < sh.ArenaSize(size) {
		return
	}
	a, err := sh.Arenas.Adopt(r)
	if err != nil {
		return // the set is full: the spare stays the cycle's
	}
	*spare = nil
	sh.Arenas.ReplaceCur(a, later)
}

// noteStep records how long one step held a shard.
func (s *Shuffler) noteStep(d time.Duration) {
	s.bgSteps.Add(1)
	storeMax(&s.bgStepMax, int64(d))
}
