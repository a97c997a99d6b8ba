package memshuffle

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
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
// lock while it moves up to 128 KiB, or a single larger entry, into memory
// mapped before it took the lock; only an entry too large to share an
// arena, or a system that refused the memory ahead of time, has a step map
// under the lock. Each step also wipes entries whose expiry has passed. It stops when ctx is done, when stop is called,
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
// No step maps memory while it holds the shard lock: mapping and locking
// fresh memory means faulting in and zeroing every page of it, which takes
// milliseconds for a few MiB on a loaded machine, and every Rent of the
// shard would wait for it. Before each step the cycle maps, with no lock
// held, a spare region as large as the arena the step may need (see
// spareSize), and a step that has used its spare stops there. Arenas a step
// empties are released into a list and unmapped after the step lets go of
// the lock. Only when the spare could not be mapped does a step map under
// the lock, as any allocation would: without memory it fails there too,
// and a compaction step stands in.
func (s *Shuffler) cycle(ctx context.Context) bool {
	var later unmapList
	spares := make([]*osmem.Region, len(s.shards))
	defer func() {
		for _, r := range spares {
			if r != nil {
				_ = s.unmapAux(r)
			}
		}
	}()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.closed {
			sh.mu.Unlock()
			return false
		}
		sh.startCycle(&later)
		want := 0
		if sh.live > 0 {
			want = sh.spareSize()
		}
		sh.mu.Unlock()
		later.unmapAll(s)
		if want > 0 {
			spares[i], _ = s.mapAux(want)
		}
	}
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
			if sh.spare == nil {
				sh.spare, spares[i] = spares[i], nil
			}
			start := time.Now()
			more := sh.step(&later)
			held := time.Since(start)
			// The spare for the next step: none needed, the one in place,
			// or one to map now; one too small goes.
			want, small := 0, (*osmem.Region)(nil)
			if more {
				want = sh.spareSize()
				if sh.spare != nil && len(sh.spare.Data) < want {
					small, sh.spare = sh.spare, nil
				}
				if sh.spare != nil {
					want = 0
				}
			}
			sh.mu.Unlock()
			s.noteStep(held)
			busy = busy || more
			later.unmapAll(s)
			if small != nil {
				_ = s.unmapAux(small)
			}
			if r := spares[i]; want > 0 && r != nil && len(r.Data) < want {
				_ = s.unmapAux(r)
				spares[i] = nil
			}
			// Mapping memory can stall (page zeroing, huge-page compaction):
			// do it here, with no lock held, for the shard's next step.
			if want > 0 && spares[i] == nil {
				spares[i], _ = s.mapAux(want)
			}
			// Let goroutines waiting for this shard in before the next step.
			runtime.Gosched()
		}
	}
	// A cycle ends with no empty arena and no spare left mapped: a
	// Shuffler whose entries are gone maps nothing.
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.closed {
			sh.mu.Unlock()
			return false
		}
		_ = sh.releaseEmpty(nil, &later)
		spare := sh.spare
		sh.spare = nil
		sh.mu.Unlock()
		later.unmapAll(s)
		if spare != nil {
			_ = s.unmapAux(spare)
		}
	}
	return true
}

// spareSize is the size of arena the shard's next step may have to map:
// one of the shard's usual size, or one for the next entry of the cycle if
// that is larger. An oversize entry gets an arena of its own, mapped under
// the lock as its copy is made there, each in time proportional to its
// size.
func (sh *shard) spareSize() int {
	n := stepBytes
	if sh.bgPos < len(sh.bgOrder) {
		if i := sh.bgOrder[sh.bgPos]; i < sh.nslots {
			sl := sh.slot(i)
			if size := int(sl.size) + sh.ov; !sh.oversize(size, sl.align()) {
				n = max(n, size)
			}
		}
	}
	return sh.arenaSize(n)
}

// startCycle draws the order in which this cycle visits the shard's slots
// and sends what it moves to a fresh arena. An empty current arena goes to
// later.
func (sh *shard) startCycle(later *unmapList) {
	sh.bgOrder = sh.permutation(sh.bgOrder, int(sh.nslots))
	sh.bgPos = 0
	sh.relock()
	sh.replaceCur(nil, later)
}

// step moves the next few entries of the cycle; it reports whether any
// remain. The arenas it empties go to later. A step that had a spare stops
// once it has taken it for a new arena: the next arena it needed would be
// mapped under the lock.
func (sh *shard) step(later *unmapList) bool {
	sh.sweepExpired(later)
	budget, count := stepBytes, 0
	var moved uint64
	hadSpare := sh.spare != nil
	for sh.bgPos < len(sh.bgOrder) && budget > 0 && count < stepEntries {
		if hadSpare && sh.spare == nil {
			break
		}
		i := sh.bgOrder[sh.bgPos]
		sh.bgPos++
		if i >= sh.nslots {
			continue
		}
		// Without memory the entry stays where it is, safe, and a
		// compaction step into existing holes stands in; the next cycle
		// tries again.
		m, ok := sh.relocate(sh.slot(i), later)
		if !ok {
			budget -= int(sh.compact(later)) // counted in bytesMoved by compact
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

// noteStep records how long one step held a shard.
func (s *Shuffler) noteStep(d time.Duration) {
	s.bgSteps.Add(1)
	storeMax(&s.bgStepMax, int64(d))
	if afterStep != nil {
		afterStep(d)
	}
}

// afterStep, when set by a benchmark before any background shuffler
// starts, sees how long every step held its shard lock.
var afterStep func(held time.Duration)
