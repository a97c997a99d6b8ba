package memshuffle

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestShuffleRetriesRefusedHandOverUnmap: an arena a Shuffle empties whole
// goes on the hand-over list, and a munmap of it that the system refuses
// is Shuffle's error, and is tried again by the next Shuffle, as Shuffle's
// doc says. It was dropped: Shuffle returned nil, and the region stayed
// mapped, locked and counted after Close.
func TestShuffleRetriesRefusedHandOverUnmap(t *testing.T) {
	base := vmLck(t)
	s := newTest(t, WithShards(1), WithArenaSize(4096))
	m := model{}
	for i := range minInPlace - 1 { // too few to shuffle in place
		allocPattern(t, s, m, 32, i)
	}
	if err := s.Shuffle(); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	osmem.SetFault(func(o osmem.Op) error {
		if o == osmem.OpUnmap && calls.Add(1) == 1 {
			return osmem.ErrInjected
		}
		return nil
	})
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
	if st := s.Stats(); st.LockedBytes != 0 || st.UnlockedBytes != 0 {
		t.Errorf("after Close: %d bytes locked and %d unlocked counted", st.LockedBytes, st.UnlockedBytes)
	}
	if got := vmLck(t); got != base {
		t.Errorf("after Close: VmLck %d, %d before New", got, base)
	}
}
