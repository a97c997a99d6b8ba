package memshuffle

import (
	"fmt"
	"runtime"
	"testing"
)

// TestPickShardSpreads checks that one goroutine's entries move on to
// other shards after each run of hintRun, which keeps even a single
// goroutine's entries from all waiting on one shard lock.
func TestPickShardSpreads(t *testing.T) {
	s, err := New(WithShards(8))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if used := shardsUsed(t, s); len(used) < 2 {
		t.Fatalf("%d allocations went to %d shard(s): %v", 4*hintRun, len(used), used)
	}
}

// shardsUsed makes 4*hintRun entries of s from this goroutine and counts
// them by shard.
func shardsUsed(t *testing.T, s *Shuffler) map[uint32]int {
	t.Helper()
	used := map[uint32]int{}
	for range 4 * hintRun {
		h, err := Alloc[byte](s, 8)
		if err != nil {
			t.Fatal(err)
		}
		used[h.shard()]++
	}
	return used
}

// TestPickShardSpreadsOnManyProcessors is TestPickShardSpreads with
// GOMAXPROCS at or above the shard count: a machine of 8 processors with
// WithShards(8), or of 64 or more with the default 64 shards. A stride of
// the shard count once kept every stream on one shard there.
func TestPickShardSpreadsOnManyProcessors(t *testing.T) {
	for _, c := range []struct{ procs, shards int }{{8, 8}, {12, 8}, {2, 2}, {64, 0}} {
		t.Run(fmt.Sprintf("procs=%d/shards=%d", c.procs, c.shards), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(c.procs))
			var opts []Option
			if c.shards > 0 {
				opts = append(opts, WithShards(c.shards))
			}
			s, err := New(opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if used := shardsUsed(t, s); len(used) < 2 {
				t.Fatalf("%d allocations on %d shards went to %d shard(s): %v", 4*hintRun, len(s.shards), len(used), used)
			}
		})
	}
}
