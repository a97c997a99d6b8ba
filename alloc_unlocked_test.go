package memshuffle

import (
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestAllocMapsUnlocked: an Alloc that needs a new arena maps and locks it
// with the shard unlocked, so that the Rents and Returns of the shard's
// other entries do not wait for the system to back every page of it (40
// ms for an arena of 16 MiB, when it was done under the lock). Each time
// the system is asked to map or lock memory during an Alloc, the shard
// lock must be free; and the entries all hold their values after.
func TestAllocMapsUnlocked(t *testing.T) {
	s := newTest(t, WithShards(1), WithArenaSize(4096))
	sh := &s.shards[0]
	var asked, held int
	osmem.SetFault(func(o osmem.Op) error {
		if o == osmem.OpMap || o == osmem.OpLock {
			asked++
			if !sh.mu.TryLock() {
				held++
			} else {
				sh.mu.Unlock()
			}
		}
		return nil
	})
	t.Cleanup(func() { osmem.SetFault(nil) })
	m := model{}
	for i := range 200 {
		allocPattern(t, s, m, 1000+i*40, i) // a hundred arenas and more, dedicated ones past 4 KiB
	}
	osmem.SetFault(nil)
	if asked == 0 || held != 0 {
		t.Errorf("the shard lock was held for %d of the %d times Alloc asked the system for memory", held, asked)
	}
	verifyModel(t, s, m)
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
}
