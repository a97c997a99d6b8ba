package memshuffle

import (
	"bytes"
	"errors"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// TestAllocElsewhere: an Alloc whose shard the system refuses a new arena
// goes into room another shard's arenas already have, and fails only once
// no shard has room for it, after asking the system once more. Before, it
// failed with the other shard's arena nearly empty. Once refused, the
// shard takes that room without asking the system each time.
func TestAllocElsewhere(t *testing.T) {
	const size = 1000 // aligned to 8: entries pack with no padding
	for _, c := range []struct {
		name string
		ciph Cipher
		tag  int
	}{
		{"ctr", AES256CTR, 0},
		{"gcm", AES256GCM, aeadTagSize},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newTest(t, WithShards(2), WithCipher(c.ciph), WithArenaSize(64<<10))
			pick := uint32(0)
			s.replayShard = func() uint32 { return pick }
			vals := map[Handle]byte{}
			put := func(h Handle, v byte) {
				t.Helper()
				b, err := RentSlice[byte](s, h)
				if err != nil {
					t.Fatal(err)
				}
				for i := range b {
					b[i] = v
				}
				if err := s.Return(h); err != nil {
					t.Fatal(err)
				}
				vals[h] = v
			}
			h, err := Alloc[byte](s, size)
			if err != nil {
				t.Fatal(err)
			}
			put(h, 1)
			mapped := s.Stats().MappedBytes

			// Shard 1 has no arena, and the system maps none.
			var refused int
			osmem.SetFault(func(o osmem.Op) error {
				if o == osmem.OpMap {
					refused++
					return osmem.ErrInjected
				}
				return nil
			})
			defer osmem.SetFault(nil)
			pick = 1
			var made []Handle
			for {
				before := refused
				h, err := Alloc[byte](s, size)
				if err != nil {
					if !errors.Is(err, ErrOutOfMemory) {
						t.Fatalf("after %d entries: %v", len(vals), err)
					}
					// Refused only after the system was asked again.
					if refused == before {
						t.Error("the last Alloc failed without a mapping")
					}
					break
				}
				if got := h.shard(); got != 0 {
					t.Fatalf("entry %d went to shard %d, which has no arena", len(made), got)
				}
				// Once refused, shard 1 takes the room there is before it
				// asks the system again.
				if len(made) > 0 && refused != before {
					t.Errorf("entry %d: %d more mappings refused", len(made), refused-before)
				}
				made = append(made, h)
			}
			osmem.SetFault(nil)
			mustCheck(t, s)
			if st := s.Stats(); refused == 0 || st.MappedBytes != mapped {
				t.Fatalf("%d maps refused; %d bytes mapped, %d before", refused, st.MappedBytes, mapped)
			}
			// Written once the system maps again: the refusals gave back
			// the AEAD modes' idle backup buffers, which a Rent maps anew.
			for i, h := range made {
				put(h, byte(i+2))
			}
			// Refused only when the one arena had no room left.
			if used := int64(len(vals) * (size + c.tag)); used+size+int64(c.tag) <= mapped {
				t.Errorf("refused with %d of %d arena bytes used", used, mapped)
			}
			for h, v := range vals {
				b, err := ViewSlice[byte](s, h)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(b, bytes.Repeat([]byte{v}, size)) {
					t.Errorf("entry %v lost its value", h)
				}
				if err := s.ReturnView(h); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("%d entries of %d bytes in %d mapped bytes", len(vals), size, mapped)
		})
	}
}

// TestLockedRoomFirstFaults: under LockBestEffort, an Alloc whose new
// arena the system will not lock first gives back the emptied current
// arena a larger entry left in the other shard, and asks again; the entry
// goes into the new arena, locked if the system now allows it and
// unlocked if not. An emptied arena of the size its shard maps stays, and
// the entry goes into its locked room rather than into unlocked memory
// (it went unlocked before lockedRoomElsewhere). TestLockedRoomFirst
// measures it against the real memory-lock limit.
func TestLockedRoomFirstFaults(t *testing.T) {
	for _, c := range []struct {
		name     string
		first    int // the entry made and freed in shard 0
		refuse   int // locks the system refuses, from the first; -1: every one
		shard    uint32
		arenas   int
		unlocked int64
	}{
		{"relocked", 200_000, 1, 1, 1, 0},
		{"unlocked", 200_000, -1, 1, 1, 64 << 10},
		{"kept", 1000, -1, 0, 1, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newTest(t, WithShards(2), WithArenaSize(64<<10))
			pick := uint32(0)
			s.replayShard = func() uint32 { return pick }
			h, err := Alloc[byte](s, c.first)
			if err != nil {
				t.Fatal(err)
			}
			skipUnlockedShard(t, s, 0)
			if err := s.Free(h); err != nil { // shard 0's current arena stays, empty
				t.Fatal(err)
			}
			locks := 0
			osmem.SetFault(func(o osmem.Op) error {
				if o != osmem.OpLock {
					return nil
				}
				locks++
				if c.refuse < 0 || locks <= c.refuse {
					return osmem.ErrInjected
				}
				return nil
			})
			defer osmem.SetFault(nil)
			pick = 1
			if h, err = Alloc[byte](s, 1000); err != nil {
				t.Fatal(err)
			}
			osmem.SetFault(nil)
			mustCheck(t, s)
			st := s.Stats()
			if st.LockFailures == 0 {
				t.Fatal("no lock was refused")
			}
			if h.shard() != c.shard || st.Arenas != c.arenas || st.UnlockedBytes != c.unlocked {
				t.Errorf("entry in shard %d; %d arenas, %d bytes mapped, %d unlocked; want shard %d, %d arenas, %d unlocked",
					h.shard(), st.Arenas, st.MappedBytes, st.UnlockedBytes, c.shard, c.arenas, c.unlocked)
			}
		})
	}
}

// TestBestEffortChurnKeepsArenas: under LockBestEffort with every lock
// refused, entries that come and go on two shards in turn map one arena
// per shard, as when locks are granted. When the give-back before an
// unlocked arena also dropped emptied arenas of the usual size, each
// switch of shard mapped one, had its lock refused and dropped the other
// shard's: 63 maps in 1,000 rounds, against 2.
func TestBestEffortChurnKeepsArenas(t *testing.T) {
	s := newTest(t, WithShards(2), WithArenaSize(64<<10))
	pick := uint32(0)
	s.replayShard = func() uint32 { return pick }
	maps := refuseLocks(t)
	for i := range 1000 {
		pick = uint32(i/16) % 2
		h, err := Alloc[byte](s, 32)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Free(h); err != nil {
			t.Fatal(err)
		}
	}
	osmem.SetFault(nil)
	if st := s.Stats(); *maps > 2 || st.ArenasReleased != 0 {
		t.Errorf("%d arenas mapped, %d released", *maps, st.ArenasReleased)
	}
}

// TestLockedRoomFirstKeepsUsingIt: under LockBestEffort with every lock
// refused, a shard whose new arena went unlocked puts its entries of 32
// bytes in the locked room another shard has, and keeps doing so, mapping
// no arena per entry: while a third shard's large entries come and go,
// taking no unlocked room of the third shard's first, and while it makes
// entries too large for any arena but their own itself, for which that
// room has no place. Noted as a refusal that the next unmap anywhere
// forgot, it mapped and unmapped an arena for 299 of 300 entries of the
// first case; then each entry of 17 MiB cleared the note, and 20 arenas
// were mapped for 20 entries in the second. With no locked room taken at
// all, the entries went unlocked into an arena of their shard's own.
func TestLockedRoomFirstKeepsUsingIt(t *testing.T) {
	for _, c := range []struct {
		name   string
		rounds int
		shard  uint32 // where the large entries go
		size   int
		room   bool // shard 2 gets an unlocked arena with room first
	}{
		{"beside large entries of another shard", 300, 2, 300 << 10, true},
		{"with entries of their own arenas", 20, 1, 17 << 20, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newTest(t, WithShards(4), WithArenaSize(64<<10))
			pick := uint32(0)
			s.replayShard = func() uint32 { return pick }
			if _, err := Alloc[byte](s, 32); err != nil { // shard 0: a locked arena with room
				t.Fatal(err)
			}
			if s.Stats().LockedBytes == 0 {
				t.Skip("the system locks no memory here")
			}
			skipUnlockedShard(t, s, 0)
			maps := refuseLocks(t)
			if c.room {
				pick = 2
				if _, err := Alloc[byte](s, 70<<10); err != nil {
					t.Fatal(err)
				}
			}
			var large Handle
			in := map[uint32]int{}
			mapped := 0
			for range c.rounds {
				pick = 1
				before := *maps
				h, err := Alloc[byte](s, 32)
				if err != nil {
					t.Fatal(err)
				}
				mapped += *maps - before
				in[h.shard()]++
				pick = c.shard
				l, err := Alloc[byte](s, c.size)
				if err != nil {
					t.Fatal(err)
				}
				if large != (Handle{}) {
					if err := s.Free(large); err != nil {
						t.Fatal(err)
					}
				}
				large = l
			}
			osmem.SetFault(nil)
			mustCheck(t, s)
			if in[0] != c.rounds || mapped > 1 {
				t.Errorf("entries by shard %v, %d arenas mapped for them; want all %d in shard 0, at most 1 mapped", in, mapped, c.rounds)
			}
		})
	}
}

// refuseLocks makes the system refuse every lock of memory until the test
// ends or sets another fault, and counts the mappings meanwhile.
func refuseLocks(t *testing.T) *int {
	maps := new(int)
	osmem.SetFault(func(o osmem.Op) error {
		switch o {
		case osmem.OpMap:
			*maps++
		case osmem.OpLock:
			return osmem.ErrInjected
		}
		return nil
	})
	t.Cleanup(func() { osmem.SetFault(nil) })
	return maps
}

// TestLockedRoomSkipsUnlockedOffer: the locked room an entry takes when
// its own shard's new arena went unlocked is room in arenas another shard
// already has, never a region that shard has on offer unlocked (an
// Alloc's, which lets go of the shard while it encrypts a large entry).
// Before, the other shard adopted that region as its new arena for the
// entry: unlocked memory, reached by the pass meant to avoid it.
func TestLockedRoomSkipsUnlockedOffer(t *testing.T) {
	const size = 8 << 10
	s := newTest(t, WithShards(2), WithArenaSize(64<<10))
	pick := uint32(0)
	s.replayShard = func() uint32 { return pick }
	if _, err := Alloc[byte](s, size); err != nil {
		t.Fatal(err)
	}
	if s.Stats().LockedBytes == 0 {
		t.Skip("the system locks no memory here")
	}
	skipUnlockedShard(t, s, 0)
	maps := refuseLocks(t)
	// Shard 0's locked arenas filled, until the next entry of size bytes
	// needs another.
	sh := &s.shards[0]
	var need *store.NeedMap
	sh.mu.Lock()
	for need == nil {
		sh.Arenas.DeferMap(true)
		_, err := sh.alloc(size, 1)
		sh.Arenas.DeferMap(false)
		if err != nil && !errors.As(err, &need) {
			sh.mu.Unlock()
			t.Fatal(err)
		}
	}
	r, err := s.mapAux(need.N)
	if err != nil || r.LockErr == nil {
		sh.mu.Unlock()
		t.Fatalf("region to offer: %v, lock error %v", err, r.LockErr)
	}
	sh.Arenas.Offer(r, need.N)
	sh.mu.Unlock()
	defer func() {
		sh.mu.Lock()
		r := sh.Arenas.TakeOffer()
		sh.mu.Unlock()
		if r != nil {
			_ = s.aux.Unmap(r)
		}
	}()

	pick = 1
	before := *maps
	h, err := Alloc[byte](s, size)
	if err != nil {
		t.Fatal(err)
	}
	osmem.SetFault(nil)
	sh.mu.Lock()
	unlocked0 := sh.Arenas.Unlocked()
	sh.mu.Unlock()
	if h.shard() != 1 || unlocked0 != 0 || *maps-before != 1 {
		t.Errorf("entry in shard %d, shard 0 has %d bytes unlocked, %d regions mapped; want shard 1 (its own unlocked arena), none, 1",
			h.shard(), unlocked0, *maps-before)
	}
}
