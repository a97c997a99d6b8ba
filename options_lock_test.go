package memshuffle

import (
	"testing"

	"github.com/memshuffle/memshuffle/internal/store"
)

// TestLockPredicates holds the two questions every limit check asks of a
// configuration to the lock modes' docs, and freshMax to the first: secret
// memory is locked whatever the LockMode, so a Shuffle under
// WithSecretMemory and LockNone caps its fresh arenas as under the other
// modes. It mapped one fresh arena per shard of the whole shard's size,
// which secret memory could not get beside the old ones at the limit.
func TestLockPredicates(t *testing.T) {
	const lim = 8 << 20
	for _, c := range []struct {
		secret       bool
		mode         LockMode
		locks, needs bool
	}{
		{false, LockBestEffort, true, false},
		{false, LockStrict, true, true},
		{false, LockNone, false, false},
		{true, LockBestEffort, true, true},
		{true, LockStrict, true, true},
		{true, LockNone, true, true},
	} {
		// Made under LockNone, which no memory-lock limit refuses: the
		// predicates read the configuration alone.
		s := newTest(t, WithShards(1), WithLockMode(LockNone))
		s.cfg.lock, s.cfg.secret = c.mode, c.secret
		if got := s.cfg.locks(); got != c.locks {
			t.Errorf("secret %v, mode %d: locks() = %v, want %v", c.secret, c.mode, got, c.locks)
		}
		if got := s.cfg.needsLock(); got != c.needs {
			t.Errorf("secret %v, mode %d: needsLock() = %v, want %v", c.secret, c.mode, got, c.needs)
		}
		want := store.MaxArenaSize
		if c.locks {
			want = 4 << 20 // hugeArena: the limit holds two
		}
		if got := s.shards[0].freshMax(lim); got != want {
			t.Errorf("secret %v, mode %d: freshMax(8 MiB) = %d, want %d", c.secret, c.mode, got, want)
		}
		s.cfg.lock, s.cfg.secret = LockNone, false
	}
}
