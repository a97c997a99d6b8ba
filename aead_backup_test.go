package memshuffle

import (
	"bytes"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestAEADReadableWhenLockRefused: in an authenticated mode, opening an
// entry keeps a copy of its ciphertext to put back should authentication
// fail. Under LockStrict, with the memory-lock limit reached, mapping
// locked room for that copy was refused and so was every Rent and View:
// entries stored before the limit was reached became unreadable. The copy
// holds no secret, so it may sit in unlocked memory; the entry's plaintext
// still only ever sits in its locked arena.
func TestAEADReadableWhenLockRefused(t *testing.T) {
	for _, m := range []Cipher{AES256GCM, ChaCha20Poly1305} {
		t.Run(m.String(), func(t *testing.T) {
			s := newOrSkip(t, WithCipher(m), WithLockMode(LockStrict))
			want := bytes.Repeat([]byte{0x5a}, 100)
			h, err := Alloc[byte](s, len(want))
			skipLockFailed(t, err)
			if err != nil {
				t.Fatal(err)
			}
			b, err := RentSlice[byte](s, h)
			if err != nil {
				t.Fatal(err)
			}
			copy(b, want)
			if err := s.Return(h); err != nil {
				t.Fatal(err)
			}
			// The limit is reached: every lock from here on is refused, and
			// the backup buffer the first Rent mapped is given back, as a
			// refused allocation's reclaim does.
			refuse(t, osmem.OpLock)
			sh := &s.shards[h.shard()]
			sh.mu.Lock()
			if sh.backup != nil {
				sh.dropBackup()
			}
			sh.mu.Unlock()
			got, err := ViewSlice[byte](s, h)
			if err != nil {
				t.Fatalf("View at the memory-lock limit: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("View read %x, want %x", got, want)
			}
			if err := s.ReturnView(h); err != nil {
				t.Fatal(err)
			}
			osmem.SetFault(nil)
		})
	}
}
