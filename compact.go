package memshuffle

import "github.com/memshuffle/memshuffle/internal/store"

// reclaim gives back what memory it can, in bounded work, for an
// allocation that the system refused memory or a lock: empty arenas of
// this shard and, where their locks are free, of the others, then a few
// compaction steps (see store.Shard.Compact).
func (sh *shard) reclaim() {
	if c := sh.Arenas.Cur(); c != nil && c.Live == 0 {
		sh.Arenas.ReplaceCur(nil, nil)
	}
	if sh.backup != nil && sh.Counts.Rented()+sh.Counts.Viewed() == 0 && !sh.rotating() {
		sh.dropBackup()
	}
	for i := range sh.s.shards {
		o := &sh.s.shards[i]
		if o == sh || !o.mu.TryLock() {
			continue
		}
		if !o.closed {
			if c := o.Arenas.Cur(); c != nil && c.Live == 0 {
				o.Arenas.ReplaceCur(nil, nil)
			}
		}
		o.mu.Unlock()
	}
	for range store.ReclaimSteps {
		sh.Compact(nil)
	}
}

// relock locks arenas the system refused to lock when they were mapped,
// now that it may have room again.
func (sh *shard) relock() {
	if sh.s.cfg.lock != LockNone {
		sh.Arenas.Relock()
	}
}

// rotating reports whether a key rotation may still need the shard's
// backup buffer: one is running (it holds rotateMu from acquiring every
// shard's buffer to its last batch, rests included), or one stopped
// part-way with entries of the shard still under the old key. Giving the
// buffer back then lets the allocation that asked for memory take it, and
// the rotation's next batch, refused the buffer again, stops part-way,
// which RotateKey promises only for an entry larger than any the shard
// held when the rotation began. The caller holds the shard lock;
// TryLock never waits, so the order of the two locks does not matter.
func (sh *shard) rotating() bool {
	if sh.rot.prev != nil || !sh.s.rotateMu.TryLock() {
		return true
	}
	sh.s.rotateMu.Unlock()
	return false
}
