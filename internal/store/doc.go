// Package store is the storage engine of a memshuffle shard: where entries
// are, in which memory, and how that memory is mapped, reused, compacted and
// given back. It knows nothing of ciphers, keys or Handles: to it an entry
// is Size bytes of ciphertext plus a fixed tag, placed, moved and wiped as
// bytes. The root package keeps the public API, the cipher and counter runs,
// pins and the lifecycle, and holds one Shard per shard under its lock.
//
// The types, each owning one concern:
//
//   - [Slot]: one entry's metadata, 24 bytes; state, generation and
//     alignment only behind accessors, the viewer count in a field of its
//     own, and nothing that only a free slot uses.
//   - [Slots]: the slot table, in chunks that never move, with its free list
//     (a stack of free slot indexes, outside the slots).
//   - [Arena]: one mapped region entries are placed in.
//   - [Arenas]: the arena set: mapping (through an injected [MapFunc]),
//     release, the current arena, the free-space index, and the mapped,
//     locked, unlocked and dumpable accounting.
//   - [FreeSpace]: the index of free extents (segregated fits, coalesced).
//   - [UnmapList]: regions released under the lock, to unmap after it.
//   - [Aux]: the count of regions that are not arenas (spares, regions in
//     an UnmapList), safe for concurrent use.
//   - [Counts]: the gauges: entries, rented, viewed, live and oversize bytes.
//   - [Expiries]: the deadlines, slot to Unix nanoseconds, in a min-heap
//     that hands out the earliest first.
//   - [Waiters]: goroutines waiting for a return, and writers waiting per
//     entry.
//   - [Shard]: the engine, composing all of the above: placement, moves,
//     compaction and [Shard.Check], the invariant checker tests run.
//
// Nothing here is safe for concurrent use except Aux: a Shard is guarded by
// its owner's lock.
package store
