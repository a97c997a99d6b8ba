package memshuffle

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestShuffleRetriesRefusedHandOverUnmap: an arena a Shuffle empties whole
// goes on the hand-over list, and a munmap of it that the system refuses
// is Shuffle's error, and is tried again by the next Shuffle, as Shuffle's
// doc says. It was dropped: Shuffle returned nil, and the region stayed
// mapped, locked and counted after Close.
func TestShuffleRetriesRefusedHandOverUnmap(t *testing.T) {
	base := vmLck(t)
	s, m := shuffledOnce(t)
	needHandOver(t, s)
	var calls atomic.Int64
	refuseFirstUnmap(&calls, nil)
	err := s.Shuffle()
	osmem.SetFault(nil)
	if calls.Load() == 0 {
		t.Fatal("no munmap")
	}
	if !errors.Is(err, osmem.ErrInjected) {
		t.Errorf("Shuffle after a refused munmap: %v, want the refusal", err)
	}
	if err := s.Shuffle(); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, s)
	verifyModel(t, s, m)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	leftNothing(t, s, base)
}

// refuseFirstUnmap makes the next munmap fail, after calling before, if
// not nil; calls counts the munmaps from then on.
func refuseFirstUnmap(calls *atomic.Int64, before func()) {
	calls.Store(0)
	osmem.SetFault(func(o osmem.Op) error {
		if o == osmem.OpUnmap && calls.Add(1) == 1 {
			if before != nil {
				before()
			}
			return osmem.ErrInjected
		}
		return nil
	})
}

// leftNothing checks that the closed s counts no memory and that VmLck is
// back to base, what it was before New.
func leftNothing(t *testing.T, s *Shuffler, base int64) {
	t.Helper()
	if st := s.Stats(); st.LockedBytes != 0 || st.UnlockedBytes != 0 {
		t.Errorf("after Close: %d bytes locked and %d unlocked counted", st.LockedBytes, st.UnlockedBytes)
	}
	if got := vmLck(t); got != base {
		t.Errorf("after Close: VmLck %d, %d before New", got, base)
	}
}

// TestCloseWaitsForRetry: a Close while a Shuffle retries a refused unmap
// waits for that retry and tries again what it leaves, so that when Close
// returns nil nothing is left mapped. The retry took the list before it
// unmapped, Close found it empty and returned nil, and the region the
// retry was refused again stayed mapped for good; the Shuffle, finding the
// shards closed, dropped that refusal too.
func TestCloseWaitsForRetry(t *testing.T) {
	base := vmLck(t)
	s, _ := shuffledOnce(t)
	needHandOver(t, s)
	var calls atomic.Int64
	refuseFirstUnmap(&calls, nil)
	if err := s.Shuffle(); !errors.Is(err, osmem.ErrInjected) {
		t.Fatalf("Shuffle: %v, want the refusal", err)
	}
	// The next Shuffle's retry is refused again, after Close has begun.
	entered, release := make(chan struct{}), make(chan struct{})
	refuseFirstUnmap(&calls, func() {
		close(entered)
		<-release
	})
	defer osmem.SetFault(nil)
	shuffled := make(chan error)
	go func() { shuffled <- s.Shuffle() }()
	<-entered
	go func() {
		time.Sleep(50 * time.Millisecond)
		close(release)
	}()
	closeErr := s.Close()
	shErr := <-shuffled
	if !errors.Is(shErr, osmem.ErrInjected) || !errors.Is(shErr, ErrClosed) {
		t.Errorf("Shuffle across Close: %v, want its retry's refusal and ErrClosed", shErr)
	}
	if closeErr != nil {
		t.Errorf("Close: %v", closeErr)
	}
	leftNothing(t, s, base)
}

// TestCloseKeepsRefusedRegions: regions Close cannot unmap (an arena, the
// Shuffler's own region) are its error, stay counted in Stats as the
// system has them locked, and a later Close unmaps them. The own region's
// refusal was dropped, its count zeroed, and nothing tried again.
func TestCloseKeepsRefusedRegions(t *testing.T) {
	base := vmLck(t)
	s := newTest(t, WithShards(1))
	if _, err := CopyFrom(s, []byte("an arena to unmap")); err != nil {
		t.Fatal(err)
	}
	osmem.SetFault(func(o osmem.Op) error {
		if o == osmem.OpUnmap {
			return osmem.ErrInjected
		}
		return nil
	})
	err := s.Close()
	osmem.SetFault(nil)
	if !errors.Is(err, osmem.ErrInjected) {
		t.Fatalf("Close with every unmap refused: %v, want the refusal", err)
	}
	if st, got := s.Stats(), vmLck(t); st.LockedBytes != got-base {
		t.Errorf("after a refused Close: %d bytes locked counted, VmLck %d above its start", st.LockedBytes, got-base)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close again: %v", err)
	}
	leftNothing(t, s, base)
}

// shuffleRefused runs a Shuffle of s, from shuffledOnce, whose first
// munmap the system refuses, and returns the bytes s counted before it.
func shuffleRefused(t *testing.T, s *Shuffler) (before int64) {
	t.Helper()
	needHandOver(t, s)
	before = counted(s)
	var calls atomic.Int64
	refuseFirstUnmap(&calls, nil)
	err := s.Shuffle()
	osmem.SetFault(nil)
	if !errors.Is(err, osmem.ErrInjected) {
		t.Fatalf("Shuffle after a refused munmap: %v, want the refusal", err)
	}
	if counted(s) <= before {
		t.Fatal("the refused region is not counted")
	}
	return before
}

// needHandOver skips a test of a refused unmap that the next Shuffle
// retries where s's Shuffle unmaps emptied arenas at once instead of
// handing them over (its shard has arenas the system would not lock, as
// under ulimit -l 0): the same Shuffle then releases the refused arena
// again at its end, and returns no error when that works.
func needHandOver(t *testing.T, s *Shuffler) {
	t.Helper()
	if st := s.Stats(); st.UnlockedBytes > 0 && s.cfg.lock != LockNone {
		t.Skipf("%d bytes the system would not lock: no hand-over", st.UnlockedBytes)
	}
}

// counted is the memory s counts, locked or not.
func counted(s *Shuffler) int64 {
	st := s.Stats()
	return st.LockedBytes + st.UnlockedBytes
}

// TestNextShuffleRetriesRefusedUnmap: the next Shuffle, not only Close,
// unmaps a region the system refused, as Shuffle's doc says.
func TestNextShuffleRetriesRefusedUnmap(t *testing.T) {
	s, _ := shuffledOnce(t)
	before := shuffleRefused(t, s)
	if err := s.Shuffle(); err != nil {
		t.Fatal(err)
	}
	if got := counted(s); got != before {
		t.Errorf("after the next Shuffle: %d bytes counted, %d before the refusal", got, before)
	}
}

// TestCloseRetriesRefusedUnmap: Close makes a last try at a region the
// system refused, with no Shuffle in between.
func TestCloseRetriesRefusedUnmap(t *testing.T) {
	base := vmLck(t)
	s, _ := shuffledOnce(t)
	shuffleRefused(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	leftNothing(t, s, base)
}

// TestCycleRetriesRefusedUnmap: a background cycle unmaps a region the
// system refused before: after one cycle the Shuffler counts what one that
// saw no refusal counts after the same cycle.
func TestCycleRetriesRefusedUnmap(t *testing.T) {
	s, _ := shuffledOnce(t)
	shuffleRefused(t, s)
	ctl, _ := shuffledOnce(t)
	if err := ctl.Shuffle(); err != nil {
		t.Fatal(err)
	}
	if !s.cycle(context.Background(), nil) || !ctl.cycle(context.Background(), nil) {
		t.Fatal("cycle stopped")
	}
	if got, want := counted(s), counted(ctl); got != want {
		t.Errorf("after a cycle: %d bytes counted, %d without the refusal", got, want)
	}
}

// TestCloseKeepsRefusedOrphans: an arena Close leaves mapped for a Borrow
// function still running stays counted in Stats until that function ends
// and the arena is unmapped, and one whose unmap the system then refuses
// stays counted and is unmapped by a later Close, which counts it in
// Stats.ArenasReleased. Close dropped the arena's count at once, and a
// refused unmap at the end of the borrow left it mapped, and locked, with
// nothing counting it or trying again; later, the retry that gave it back
// left it out of ArenasReleased.
func TestCloseKeepsRefusedOrphans(t *testing.T) {
	base := vmLck(t)
	s := newTest(t, WithShards(1))
	h, err := CopyFrom(s, []byte("an entry borrowed across Close"))
	if err != nil {
		t.Fatal(err)
	}
	before := s.Stats()
	countedAsLocked := func(when string) {
		t.Helper()
		if st, got := s.Stats(), vmLck(t); st.LockedBytes != got-base {
			t.Errorf("%s: %d bytes locked counted, VmLck %d above its start", when, st.LockedBytes, got-base)
		}
	}
	allow := func() {}
	err = BorrowSlice(s, h, func([]byte) error {
		if err := s.Close(); err != nil {
			return err
		}
		countedAsLocked("after Close, the borrow still running")
		allow = refuse(t, osmem.OpUnmap)
		return nil
	})
	allow()
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("BorrowSlice across Close: %v, want ErrClosed", err)
	}
	if s.aux.Waiting() == 0 {
		t.Fatal("no refused unmap waits for the next Close")
	}
	countedAsLocked("after the borrow's unmap was refused")
	if err := s.Close(); err != nil {
		t.Fatalf("Close again: %v", err)
	}
	leftNothing(t, s, base)
	if got := s.Stats().ArenasReleased - before.ArenasReleased; got != uint64(before.Arenas) {
		t.Errorf("%d arenas given back, ArenasReleased grew by %d", before.Arenas, got)
	}
}
