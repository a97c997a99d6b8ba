package memshuffle

import "testing"

// TestReleaseLater: an arena released with a list is off the shard's
// books at once but stays mapped, and counted, until the list is unmapped;
// released with nil it is unmapped there and then. Which one happens is
// the caller's argument alone.
func TestReleaseLater(t *testing.T) {
	s := newTest(t, WithShards(1), WithArenaSize(4096))
	sh := &s.shards[0]
	// emptyCur leaves the shard with one current arena and no entry.
	emptyCur := func() *arena {
		h, err := Alloc[byte](s, 64)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Free(h); err != nil {
			t.Fatal(err)
		}
		sh.mu.Lock()
		defer sh.mu.Unlock()
		if sh.cur == nil || sh.cur.live != 0 || sh.mapped != int64(len(sh.cur.mem)) {
			t.Fatalf("want one empty current arena; mapped %d", sh.mapped)
		}
		return sh.cur
	}

	a := emptyCur()
	before := s.Stats()
	var later unmapList
	sh.mu.Lock()
	sh.replaceCur(nil, &later)
	sh.mu.Unlock()
	if len(later) != 1 || later[0] != a.reg || len(a.reg.Data) == 0 {
		t.Fatalf("released with a list: %d regions held, still mapped %v", len(later), len(a.reg.Data) != 0)
	}
	mid := s.Stats()
	if mid.LockedBytes != before.LockedBytes || mid.UnlockedBytes != before.UnlockedBytes || mid.MappedBytes != 0 {
		t.Fatalf("while held: locked %d unlocked %d arenas %d; before %d %d %d",
			mid.LockedBytes, mid.UnlockedBytes, mid.MappedBytes, before.LockedBytes, before.UnlockedBytes, before.MappedBytes)
	}
	mustCheck(t, s)
	held := lockedLen(a.reg) + unlockedLen(a.reg)
	later.unmapAll(s)
	after := s.Stats()
	if len(later) != 0 || len(a.reg.Data) != 0 || (after.LockedBytes+after.UnlockedBytes) != (before.LockedBytes+before.UnlockedBytes)-held {
		t.Fatalf("after unmapAll: %d held, locked+unlocked %d, want %d",
			len(later), after.LockedBytes+after.UnlockedBytes, before.LockedBytes+before.UnlockedBytes-held)
	}

	b := emptyCur()
	sh.mu.Lock()
	sh.replaceCur(nil, nil)
	sh.mu.Unlock()
	if len(b.reg.Data) != 0 {
		t.Fatal("released with nil: still mapped")
	}
	if st := s.Stats(); st.LockedBytes+st.UnlockedBytes != after.LockedBytes+after.UnlockedBytes {
		t.Fatalf("released with nil: locked+unlocked %d, want %d", st.LockedBytes+st.UnlockedBytes, after.LockedBytes+after.UnlockedBytes)
	}
	mustCheck(t, s)
}
