package memshuffle

import (
	"errors"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestShuffleWithoutMemoryUnlocked is TestShuffleWithoutMemory for a
// Shuffler whose arenas the system would not lock (LockBestEffort at the
// memory-lock limit): Shuffle still packs the entries into the holes of
// the arenas that hold most and gives the others back, as its doc says it
// does when it can map nothing. The packing took unlocked arenas' entries
// into locked ones only, so with none locked it moved nothing and every
// arena stayed mapped (266,240 bytes for 131,072 live, against 131,072
// with locked arenas).
func TestShuffleWithoutMemoryUnlocked(t *testing.T) {
	s := newTest(t, WithShards(1), WithArenaSize(4096))
	refuse(t, osmem.OpLock)
	m := halfFull(t, s)
	before := s.Stats()
	if before.UnlockedBytes == 0 {
		t.Fatal("arenas locked")
	}
	osmem.SetFault(func(o osmem.Op) error {
		if o == osmem.OpMap || o == osmem.OpLock {
			return osmem.ErrInjected
		}
		return nil
	})
	err := s.Shuffle()
	if !errors.Is(err, ErrOutOfMemory) {
		t.Fatalf("Shuffle without memory: %v, want ErrOutOfMemory", err)
	}
	mustCheck(t, s)
	after := s.Stats()
	t.Logf("live %d: mapped %d before, %d after", after.LiveBytes, before.MappedBytes, after.MappedBytes)
	if limit := after.LiveBytes + after.LiveBytes/4 + 4096; after.MappedBytes > limit {
		t.Fatalf("after Shuffle without memory: %d bytes mapped for %d live (limit %d)", after.MappedBytes, after.LiveBytes, limit)
	}
	checkModel(t, s, m)
}
