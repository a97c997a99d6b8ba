package memshuffle

import "github.com/memshuffle/memshuffle/internal/store"

// reclaim gives back what memory it can, in bounded work, for an
// allocation that the system refused memory or a lock: empty arenas of
// this shard and, where their locks are free, of the others, and, for a
// refusal of memory (backups take no locked memory), their idle backup
// buffers, then a few compaction steps (see store.Shard.Compact).
func (sh *shard) reclaim(memory bool) {
	if c := sh.Arenas.Cur(); c != nil && c.Live == 0 {
		sh.Arenas.ReplaceCur(nil, nil)
	}
	// A rotating shard keeps its backup (see dropIdleBackup), and this
	// allocation may take what it gives back.
	if memory {
		sh.dropIdleBackup()
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
			if memory {
				o.dropIdleBackup()
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
	if sh.s.cfg.lock == LockNone {
		return
	}
	sh.Arenas.Relock()
}

// dropIdleBackup gives back the shard's backup buffer when nothing uses
// it: the AEAD modes keep the last one each shard used, and it holds
// memory as much as an arena. A rotation that acquired it before
// switching keys, so that it cannot stop part-way for want of memory,
// keeps it, as do borrowed entries, whose Return or flight may use it.
func (sh *shard) dropIdleBackup() {
	if sh.backup != nil && !sh.rot.keepsBackup() && sh.Counts.Rented()+sh.Counts.Viewed() == 0 {
		sh.dropBackup()
	}
}
