package memshuffle

import "testing"

// TestInFlightUnusedRegionNotCountedReleased: a region that a move in
// flight maps for a new arena and then cannot use (another call's region
// was on offer) was never an arena, and its unmap must not count in
// Stats.ArenasReleased. It went back with the arenas a flight empties,
// whose unmaps count, and under shuffle-on-return about 5% of the count
// was such regions.
func TestInFlightUnusedRegionNotCountedReleased(t *testing.T) {
	s := newTest(t, WithShards(1), WithArenaSize(64<<10))
	if _, err := Alloc[byte](s, 100); err != nil {
		t.Fatal(err)
	}
	sh := &s.shards[0]
	// Another call's region on offer: the one reserveInFlight maps is then
	// refused by Offer and goes back unused.
	other, err := s.mapAux(64 << 10)
	if err != nil {
		t.Fatal(err)
	}
	sh.mu.Lock()
	if !sh.Arenas.Offer(other, 64<<10) {
		t.Fatal("Offer refused with nothing on offer")
	}
	before := s.tally.arenasReleased.Load()
	// Larger than any arena's free space: it needs a region of its own.
	if _, _, ok := sh.reserveInFlight(256<<10, 8); ok {
		t.Fatal("reserveInFlight succeeded with another call's region on offer")
	}
	if r := sh.Arenas.TakeOffer(); r != other {
		t.Fatal("the other call's region is no longer on offer")
	}
	sh.mu.Unlock()
	if err := s.aux.Unmap(other); err != nil {
		t.Fatal(err)
	}
	if n := s.tally.arenasReleased.Load() - before; n != 0 {
		t.Errorf("ArenasReleased grew by %d for a region that was never an arena", n)
	}
	mustCheck(t, s)
}
