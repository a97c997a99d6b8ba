package store

import "github.com/memshuffle/memshuffle/internal/osmem"

// Moves are a shard's entry moves in flight: entries whose ciphertext is
// being copied to a new place while the shard's lock is let go, so that a
// Rent of another entry of the shard does not wait for the copying. A move
// has three parts:
//
//  1. Under the lock, BeginMove reserves the destination and marks the
//     entry StateMoving. The reservation counts as an entry of its arena,
//     and the entry still counts in the arena it leaves, so neither arena
//     can be released, and neither place can be handed out, until the move
//     is done.
//  2. With no lock held, the mover copies each entry's ciphertext (never
//     plaintext: a moving entry is not borrowed) to its destination and
//     wipes the source (see Copy.Do).
//  3. Under the lock again, FinishMoves takes every source out of its
//     arena, points each slot at its destination, makes the entries live,
//     and wakes whoever waits (Done).
//
// While an entry is StateMoving nothing but its mover reads or writes its
// bytes: its owner makes a borrow or Free of it wait for Done, and every
// path that reads entries in bulk (shuffles, key rotation, Purge, Close)
// waits for Done before it starts.
type Moves struct {
	list []move
	done chan struct{} // closed by FinishMoves; nil while none is in flight
}

// move is one entry's move in flight: its slot and its reserved place.
type move struct {
	slot uint32
	dst  *Arena
	off  uint32
}

// Copy is the copying one move needs, for its mover to do with no lock
// held: Src is the entry's extent where it is, Dst its reserved place.
type Copy struct{ Src, Dst []byte }

// Do copies the ciphertext to its new place and wipes the old one. Both
// stay mapped until FinishMoves: the arenas count them.
func (c Copy) Do() {
	copy(c.Dst, c.Src)
	osmem.Wipe(c.Src)
}

// Done returns a channel closed once the moves in flight are finished, or
// nil when none is.
func (e *Shard) Done() <-chan struct{} { return e.moves.done }

// InFlight is the number of entries moving.
func (e *Shard) InFlight() int { return len(e.moves.list) }

// BeginMove starts the move of the unborrowed entry in slot i, sl, into
// the current arena, as Relocate would move it, and returns the copying to
// do with the lock let go. It reports false when there was no memory to
// move into; the entry then stays, safe, where it was. An entry that is
// not live, or is in the current arena already, needs no move: the Copy
// is empty.
func (e *Shard) BeginMove(i uint32, sl *Slot, later *UnmapList) (Copy, bool) {
	if sl.State() != StateLive || e.Arenas.list[sl.Arena()] == e.Arenas.cur {
		return Copy{}, true
	}
	n := int(sl.Size) + e.ov
	a, off, err := e.Place(n, sl.Align(), later)
	if err != nil {
		return Copy{}, false
	}
	a.Live++
	a.Bytes += n
	sl.SetState(StateMoving)
	e.moves.list = append(e.moves.list, move{slot: i, dst: a, off: uint32(off)})
	if e.moves.done == nil {
		e.moves.done = make(chan struct{})
	}
	end := off + n
	return Copy{Src: e.Extent(sl), Dst: a.Mem[off:end:end]}, true
}

// FinishMoves ends every move in flight, whose copying is done: each
// source, wiped by Copy.Do, leaves its arena, which is released if that
// empties it (see Release for later), and the slot points at the
// destination. fn, if not nil, sees each entry once it is live again. It
// returns the bytes moved and wakes every goroutine waiting on Done.
func (e *Shard) FinishMoves(later *UnmapList, fn func(i uint32, sl *Slot)) uint64 {
	var moved uint64
	for k, m := range e.moves.list {
		e.moves.list[k] = move{} // holds no arena past the move
		sl := e.Slots.At(m.slot)
		e.vacate(sl, later)
		sl.SetArena(m.dst.Index)
		sl.Off = m.off
		sl.SetState(StateLive)
		moved += uint64(sl.Size)
		if fn != nil {
			fn(m.slot, sl)
		}
	}
	e.moves.list = e.moves.list[:0]
	if e.moves.done != nil {
		close(e.moves.done)
		e.moves.done = nil
	}
	return moved
}
