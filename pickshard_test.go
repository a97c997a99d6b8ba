package memshuffle

import "testing"

// TestPickShardSpreads checks that one goroutine's entries move on to
// other shards after each run of hintRun, which keeps even a single
// goroutine's entries from all waiting on one shard lock.
func TestPickShardSpreads(t *testing.T) {
	s, err := New(WithShards(8))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	used := map[uint32]int{}
	for range 4 * hintRun {
		h, err := Alloc[byte](s, 8)
		if err != nil {
			t.Fatal(err)
		}
		used[h.shard()]++
	}
	if len(used) < 2 {
		t.Fatalf("%d allocations went to %d shard(s): %v", 4*hintRun, len(used), used)
	}

}
