package memshuffle

import (
	"cmp"
	"slices"
)

// permuteBySize is a shard's Shuffle when the system refused the fresh
// arenas: it permutes the live entries of each size and alignment among
// the places they hold in locked arenas, and likewise in unlocked ones,
// each entry to any of them with equal probability (its own included),
// independently of where it was. It needs no memory: cycles are rotated a
// chunk at a time through the shard's keystream scratch (rotateCycles),
// and no place changes hands between sizes, so every arena keeps its
// counts and free space. It lists the entries in w.slots, unless the
// shuffle that called it already did (listSlots), and reports the bytes
// moved.
//
// Under secret memory or LockStrict a shard's Shuffle needs the lock
// limit to hold the fresh arenas beside the old ones: as user nobody under
// ulimit -l 8192, a shard of 4.8 MiB of 32-byte entries failed every
// Shuffle with ErrLockFailed, and only the packing into holes moved about
// 5% of them.
func (sh *shard) permuteBySize() uint64 {
	w := &sh.work
	sh.listSlots()
	// Locked places are a kind of their own: under LockBestEffort at the
	// limit, some arenas are unlocked, and no entry may leave locked
	// memory for them (as Squeeze promises), where a Rent would decrypt
	// it in memory the system may swap out.
	kind := func(i uint32) uint64 {
		sl := sh.Slots.At(i)
		k := uint64(sl.Size)<<8 | uint64(sl.AlignLog())<<1
		if sh.Arenas.Get(sl.Arena()).Reg.Locked {
			k |= 1
		}
		return k
	}
	slices.SortFunc(w.slots, func(a, b uint32) int { return cmp.Compare(kind(a), kind(b)) })
	var moved uint64
	for lo := 0; lo < len(w.slots); {
		k := kind(w.slots[lo])
		hi := lo + 1
		for hi < len(w.slots) && kind(w.slots[hi]) == k {
			hi++
		}
		moved += sh.permutePlaces(w.slots[lo:hi])
		lo = hi
	}
	// w.slots no longer lists the entries in slot order.
	w.slots = w.slots[:0]
	return moved
}

// permutePlaces moves the entries of slots, all of one size and
// alignment and all in locked arenas or all in unlocked ones, by a uniformly random permutation of the places they hold:
// entry k goes to the place entry rank[k] held.
func (sh *shard) permutePlaces(slots []uint32) uint64 {
	n := len(slots)
	if n < 2 {
		return 0
	}
	w := &sh.work
	size := int(sh.Slots.At(slots[0]).Size) + sh.Overhead()
	w.rank = sh.permutation(w.rank, n)
	// w.to[k] is entry k's old place; place d is filled from place from[d].
	if cap(w.to) < n {
		w.to = make([]uint64, n)
	}
	w.to = w.to[:n]
	for k, i := range slots {
		sl := sh.Slots.At(i)
		w.to[k] = uint64(sl.Arena())<<32 | uint64(sl.Off)
	}
	w.inv = growU32(w.inv, n)
	from := w.inv
	for k, r := range w.rank {
		from[r] = uint32(k)
	}
	place := func(d uint32) []byte {
		p := w.to[d]
		return sh.Arenas.Get(uint32(p >> 32)).Mem[uint32(p):][:size]
	}
	sh.rotateCycles(from, ^uint32(0), size, place)
	var moved uint64
	for k, i := range slots {
		r := w.rank[k]
		if int(r) == k {
			continue
		}
		sl := sh.Slots.At(i)
		p := w.to[r]
		sl.SetArena(uint32(p >> 32))
		sl.Off = uint32(p)
		moved += uint64(sl.Size)
	}
	return moved
}
