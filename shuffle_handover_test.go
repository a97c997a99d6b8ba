package memshuffle

import (
	"bytes"
	"errors"
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
			if mode != LockNone {
				// A shard with arenas the system would not lock unmaps the
				// ones it empties instead of handing them over.
				for i := range shards {
					skipUnlockedShard(t, s, i)
				}
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

// TestArenasReleasedCountsUnmaps: Stats.ArenasReleased counts arenas given
// back to the system, so the arenas one shard empties and the next takes
// over during a Shuffle (handOver) are not among them: in a Shuffle of
// equal shards it grows by the unmaps the system saw, where it grew by
// every arena emptied (4 against 1 unmap here).
func TestArenasReleasedCountsUnmaps(t *testing.T) {
	const shards, n = 4, 4000
	s := newTest(t, WithShards(shards))
	for range n {
		if _, err := Alloc[byte](s, 32); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Shuffle(); err != nil { // the arenas a Shuffle leaves, of one size
		t.Fatal(err)
	}
	unmapped := countOps(t, osmem.OpUnmap)
	before := s.Stats()
	if err := s.Shuffle(); err != nil {
		t.Fatal(err)
	}
	unmaps := unmapped()
	after := s.Stats()
	if got := int64(after.ArenasReleased - before.ArenasReleased); got != unmaps {
		t.Errorf("ArenasReleased grew by %d in a Shuffle that unmapped %d regions", got, unmaps)
	}
	if after.Arenas != before.Arenas {
		t.Errorf("%d arenas before the Shuffle, %d after", before.Arenas, after.Arenas)
	}
}

// TestArenasReleasedCountsClose: the arenas Close gives back to the system
// count in Stats.ArenasReleased, as those a Shuffle or Free releases do;
// Close unmapped them without counting, so the gauge of arenas fell to 0
// while the counter stood still.
func TestArenasReleasedCountsClose(t *testing.T) {
	s, err := New(WithShards(4))
	if err != nil {
		t.Fatal(err)
	}
	for range 4000 {
		if _, err := Alloc[byte](s, 32); err != nil {
			t.Fatal(err)
		}
	}
	before := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	after := s.Stats()
	if got := after.ArenasReleased - before.ArenasReleased; got != uint64(before.Arenas) {
		t.Errorf("Close released %d arenas, ArenasReleased grew by %d", before.Arenas, got)
	}
}

// TestArenasReleasedCountsRetriedUnmaps: an arena whose unmap the system
// refused stays, wiped and counted, for a retry, and the retry that gives
// it back counts it in Stats.ArenasReleased, as the refused unmap would
// have. It went uncounted: over a Shuffle whose unmaps were refused and
// the next one, the counter fell short of the arenas unmapped by as many
// as had been refused.
func TestArenasReleasedCountsRetriedUnmaps(t *testing.T) {
	// CTR and no background shuffler: every region a Shuffle unmaps is an
	// arena's (no backup buffer, no spare).
	s := newTest(t, WithShards(4))
	for range 4000 {
		if _, err := Alloc[byte](s, 32); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Shuffle(); err != nil {
		t.Fatal(err)
	}
	for i := range s.shards {
		skipUnlockedShard(t, s, i) // its emptied arenas would be unmapped at once, and retried
	}
	before := s.Stats()
	allow := refuse(t, osmem.OpUnmap)
	if err := s.Shuffle(); !errors.Is(err, osmem.ErrInjected) {
		t.Fatalf("Shuffle with every unmap refused: %v, want the refusal", err)
	}
	allow()
	refused := s.aux.Waiting()
	if refused == 0 {
		t.Fatal("no unmap waits for a retry")
	}
	if got := s.Stats().ArenasReleased; got != before.ArenasReleased {
		t.Errorf("ArenasReleased grew by %d with every unmap refused", got-before.ArenasReleased)
	}
	unmapped := countOps(t, osmem.OpUnmap)
	if err := s.Shuffle(); err != nil { // retries the refused ones first
		t.Fatal(err)
	}
	unmaps := unmapped()
	if n := s.aux.Waiting(); n != 0 {
		t.Fatalf("%d refused unmaps still wait after the retry", n)
	}
	if got := int64(s.Stats().ArenasReleased - before.ArenasReleased); got != unmaps {
		t.Errorf("ArenasReleased grew by %d over a Shuffle that retried %d refused unmaps and unmapped %d regions in all", got, refused, unmaps)
	}
}
