package memshuffle

import "testing"

// TestCheckAuxIdleDroppedMeanwhile: the invariant checker read the Aux's
// counts after it had let go of the idle regions it summed, and an idle
// region dropped in between, with no shard lock (Close drops its idle
// regions once it has let go of its shards, GiveBackIdle any Shuffler's
// from any goroutine), was in the sum and no longer in the counts. Under
// Wine, TestFlightStress's checker beside Close failed that way ("0 locked
// and 0 unlocked counted, shards hold 8388608 and 0").
func TestCheckAuxIdleDroppedMeanwhile(t *testing.T) {
	needLockRoom(t, 64<<10) // only a locked region goes idle
	s := newTest(t, WithShards(1), WithArenaSize(4096))
	size := 4096 - s.shards[0].Overhead()
	first, err := Alloc[byte](s, size)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Alloc[byte](s, size); err != nil { // a second arena, now current
		t.Fatal(err)
	}
	if err := s.Free(first); err != nil { // the first empties and goes idle
		t.Fatal(err)
	}
	if s.aux.IdleBytes() == 0 {
		t.Fatal("no idle region")
	}
	checkAuxHook = func() {
		done := make(chan struct{})
		go func() { // as Close does once it has let go of the shards
			s.aux.DropIdle(nil)
			close(done)
		}()
		<-done
	}
	t.Cleanup(func() { checkAuxHook = nil })
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
	if s.aux.IdleBytes() != 0 {
		t.Fatal("the idle region was not dropped")
	}
}
