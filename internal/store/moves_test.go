package store

import (
	"bytes"
	"testing"
)

// TestMovesInFlight begins moves out of a full arena, frees every other
// entry of that arena meanwhile, and checks the engine at each stage: the
// moving entries keep their old arena mapped and their new places
// reserved, the invariants hold with moves in flight, and finishing the
// moves leaves each entry's bytes at its new place, its old place wiped,
// and the arena released once nothing is left in it.
func TestMovesInFlight(t *testing.T) {
	// 56-byte extents: 73 fill the first 4 KiB arena, 7 go to the second,
	// which is current.
	e, idx := testShard(t, 80)
	src := e.Arenas.Get(0)
	want := map[uint32][]byte{}
	var copies []Copy
	var moving []uint32
	for k := 0; k < 73; k += 2 {
		sl := e.Slots.At(idx[k])
		want[idx[k]] = bytes.Clone(e.Extent(sl))
		c, ok := e.BeginMove(idx[k], sl, nil)
		if !ok || len(c.Src) == 0 || sl.State() != StateMoving {
			t.Fatalf("entry %d: move not begun (ok %v, state %d)", k, ok, sl.State())
		}
		copies = append(copies, c)
		moving = append(moving, idx[k])
	}
	if e.Done() == nil || e.InFlight() != len(moving) {
		t.Fatalf("%d moves in flight, done channel %v", e.InFlight(), e.Done() != nil)
	}
	if err := e.Check(); err != nil {
		t.Fatalf("moves begun: %v", err)
	}
	// The entries left behind go while the moves are in flight.
	for k := 1; k < 73; k += 2 {
		sl := e.Slots.At(idx[k])
		e.Drop(sl, nil)
		e.Slots.Free(idx[k], sl)
	}
	if e.Arenas.Get(0) != src {
		t.Fatal("the arena moving entries leave was released under them")
	}
	for _, c := range copies {
		c.Do()
	}
	if err := e.Check(); err != nil {
		t.Fatalf("copied: %v", err)
	}
	done := e.Done()
	var seen int
	e.FinishMoves(nil, func(i uint32, sl *Slot) {
		seen++
		if sl.State() != StateLive || !bytes.Equal(e.Extent(sl), want[i]) {
			t.Errorf("slot %d after its move: state %d, bytes changed", i, sl.State())
		}
	})
	select {
	case <-done:
	default:
		t.Fatal("FinishMoves did not wake waiters")
	}
	if seen != len(moving) || e.Done() != nil || e.InFlight() != 0 {
		t.Fatalf("finished %d of %d moves; %d left", seen, len(moving), e.InFlight())
	}
	if e.Arenas.Get(0) != nil {
		t.Fatal("the emptied arena stayed mapped")
	}
	if err := e.Check(); err != nil {
		t.Fatalf("finished: %v", err)
	}
}

// TestCheckFindsBadMoves: a slot marked moving with no move in flight, and
// a move whose slot is no longer marked, are both caught.
func TestCheckFindsBadMoves(t *testing.T) {
	e, idx := testShard(t, 80)
	sl := e.Slots.At(idx[0])
	sl.SetState(StateMoving)
	if err := e.Check(); err == nil {
		t.Error("a moving slot without a move passed the check")
	}
	sl.SetState(StateLive)
	if _, ok := e.BeginMove(idx[0], sl, nil); !ok {
		t.Fatal("no room to move")
	}
	sl.SetState(StateLive)
	if err := e.Check(); err == nil {
		t.Error("a move of a slot not marked moving passed the check")
	}
	sl.SetState(StateMoving)
	if err := e.Check(); err != nil {
		t.Errorf("restored: %v", err)
	}
}
