package memshuffle

import (
	"testing"

	"github.com/memshuffle/memshuffle/internal/store"
)

// TestReleaseLater: an arena released with a list is off the shard's
// books at once but stays mapped, and counted, until the list is unmapped;
// released with nil it goes idle, counted, for a shard's next arena, until
// DropIdle unmaps it. Which one happens is the caller's argument alone.
func TestReleaseLater(t *testing.T) {
	s := newTest(t, WithShards(1), WithArenaSize(4096))
	sh := &s.shards[0]
	// emptyCur leaves the shard with one current arena and no entry.
	emptyCur := func() *store.Arena {
		allocFree(t, s, 64)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		if sh.Arenas.Cur() == nil || sh.Arenas.Cur().Live != 0 || sh.Arenas.Mapped() != int64(len(sh.Arenas.Cur().Mem)) {
			t.Fatalf("want one empty current arena; mapped %d", sh.Arenas.Mapped())
		}
		return sh.Arenas.Cur()
	}

	a := emptyCur()
	before := s.Stats()
	var later store.UnmapList
	sh.mu.Lock()
	sh.Arenas.ReplaceCur(nil, &later)
	sh.mu.Unlock()
	if len(later) != 1 || later[0] != a.Reg || len(a.Reg.Data) == 0 {
		t.Fatalf("released with a list: %d regions held, still mapped %v", len(later), len(a.Reg.Data) != 0)
	}
	mid := s.Stats()
	if mid.LockedBytes != before.LockedBytes || mid.UnlockedBytes != before.UnlockedBytes || mid.MappedBytes != 0 {
		t.Fatalf("while held: locked %d unlocked %d arenas %d; before %d %d %d",
			mid.LockedBytes, mid.UnlockedBytes, mid.MappedBytes, before.LockedBytes, before.UnlockedBytes, before.MappedBytes)
	}
	mustCheck(t, s)
	held := store.LockedLen(a.Reg) + store.UnlockedLen(a.Reg)
	later.UnmapAll(&s.aux)
	after := s.Stats()
	if len(later) != 0 || len(a.Reg.Data) != 0 || (after.LockedBytes+after.UnlockedBytes) != (before.LockedBytes+before.UnlockedBytes)-held {
		t.Fatalf("after UnmapAll: %d held, locked+unlocked %d, want %d",
			len(later), after.LockedBytes+after.UnlockedBytes, before.LockedBytes+before.UnlockedBytes-held)
	}

	// Released with nil, the region goes idle for the next arena a shard
	// maps, counted as it was; DropIdle unmaps it.
	b := emptyCur()
	if !b.Reg.Locked {
		// Only a locked region goes idle; an unlocked one is unmapped.
		t.Skip("the memory-lock limit left the arena unlocked")
	}
	sh.mu.Lock()
	sh.Arenas.ReplaceCur(nil, nil)
	sh.mu.Unlock()
	if st := s.Stats(); len(b.Reg.Data) == 0 || st.Arenas != 0 || st.MappedBytes != int64(len(b.Mem)) ||
		st.LockedBytes+st.UnlockedBytes != before.LockedBytes+before.UnlockedBytes {
		t.Fatalf("released with nil: mapped %v, %d arenas, %d bytes mapped, locked+unlocked %d, want %d",
			len(b.Reg.Data) != 0, st.Arenas, st.MappedBytes, st.LockedBytes+st.UnlockedBytes, before.LockedBytes+before.UnlockedBytes)
	}
	mustCheck(t, s)
	if c := emptyCur(); c.Reg != b.Reg {
		t.Fatal("the next arena was mapped anew, not the idle region")
	}
	sh.mu.Lock()
	sh.Arenas.ReplaceCur(nil, nil)
	sh.mu.Unlock()
	if n := s.aux.DropIdle(nil); len(b.Reg.Data) != 0 || n != 1 {
		t.Fatalf("after DropIdle: still mapped %v, %d regions given back, want 1", len(b.Reg.Data) != 0, n)
	}
	if st := s.Stats(); st.MappedBytes != 0 || st.LockedBytes+st.UnlockedBytes != after.LockedBytes+after.UnlockedBytes {
		t.Fatalf("after DropIdle: %d bytes mapped, locked+unlocked %d, want %d", st.MappedBytes, st.LockedBytes+st.UnlockedBytes, after.LockedBytes+after.UnlockedBytes)
	}
	mustCheck(t, s)
}
