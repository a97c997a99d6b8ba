package memshuffle

import (
	"bytes"
	"errors"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestAllocElsewhere: an Alloc whose shard the system refuses a new arena
// goes into room another shard's arenas already have, and fails only once
// no shard has room for it. Before, it failed with the other shard's
// arena nearly empty.
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
				h, err := Alloc[byte](s, size)
				if err != nil {
					if !errors.Is(err, ErrOutOfMemory) {
						t.Fatalf("after %d entries: %v", len(vals), err)
					}
					break
				}
				if got := h.shard(); got != 0 {
					t.Fatalf("entry %d went to shard %d, which has no arena", len(made), got)
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
