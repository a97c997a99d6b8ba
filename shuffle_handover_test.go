package memshuffle

import (
	"bytes"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestShuffleHandsRegionsOver: in a Shuffle, each shard after the first
// makes its fresh arenas of the regions the shard before it emptied, so a
// Shuffler of equal shards maps one shard's worth of new memory, not every
// shard's; the entries keep their values, and the Shuffler's accounting
// and invariants hold, with locking on and off.
func TestShuffleHandsRegionsOver(t *testing.T) {
	for _, c := range []struct {
		name string
		mode LockMode
	}{{"best-effort", LockBestEffort}, {"none", LockNone}} {
		mode := c.mode
		t.Run(c.name, func(t *testing.T) {
			const shards, n = 4, 4000
			s := newTest(t, WithShards(shards), WithLockMode(mode))
			hs := make([]Handle, n)
			for i := range hs {
				h, err := Alloc[byte](s, 32)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := RentSlice[byte](s, h)
				b[0], b[1], b[31] = byte(i), byte(i>>8), 0xa5
				if err := s.Return(h); err != nil {
					t.Fatal(err)
				}
				hs[i] = h
			}
			if err := s.Shuffle(); err != nil {
				t.Fatal(err)
			}
			maps := failNth(t, osmem.OpMap, -1)
			before := s.Stats()
			if err := s.Shuffle(); err != nil {
				t.Fatal(err)
			}
			osmem.SetFault(nil)
			if got := maps.Load(); got != 1 {
				t.Errorf("second Shuffle of %d equal shards mapped %d regions, want 1", shards, got)
			}
			after := s.Stats()
			if after.MappedBytes != before.MappedBytes || after.LockedBytes != before.LockedBytes || after.UnlockedBytes != before.UnlockedBytes {
				t.Errorf("mapped, locked, unlocked: %d %d %d before the Shuffle, %d %d %d after",
					before.MappedBytes, before.LockedBytes, before.UnlockedBytes, after.MappedBytes, after.LockedBytes, after.UnlockedBytes)
			}
			if err := s.check(); err != nil {
				t.Fatal(err)
			}
			for i, h := range hs {
				b, err := ViewSlice[byte](s, h)
				if err != nil {
					t.Fatal(err)
				}
				if want := []byte{byte(i), byte(i >> 8)}; !bytes.Equal(b[:2], want) || b[31] != 0xa5 {
					t.Fatalf("entry %d reads %x after two Shuffles", i, b)
				}
				if err := s.ReturnView(h); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
