package memshuffle

import (
	"bytes"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestRotateKeyKeepsPreparedBackups: in the authenticated modes a rotation
// maps every shard's backup buffer before it switches keys, so that it
// cannot stop part-way for want of memory. An Alloc the system refuses
// memory while the rotation runs reclaims what it can in its shard; it
// must not give back the buffer the rotation acquired, or the rotation,
// with the system still refusing memory (the memlock limit reached, say),
// stops with ErrRotationIncomplete though no entry grew.
func TestRotateKeyKeepsPreparedBackups(t *testing.T) {
	for _, c := range []Cipher{AES256GCM, ChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			s := newTest(t, WithCipher(c), WithShards(1), WithArenaSize(4096))
			m := model{}
			for i := range 60 {
				src := bytes.Repeat([]byte{byte(i)}, 100+i*300)
				h, err := CopyFrom(s, bytes.Clone(src))
				if err != nil {
					t.Fatal(err)
				}
				m[h] = src
			}
			holds := 0
			afterRotationHold = func() {
				if holds++; holds > 1 {
					return
				}
				// From here on the system maps nothing more; Allocs that
				// need an arena fail and reclaim in the shard, part-way
				// through its rotation.
				osmem.SetFault(func(o osmem.Op) error {
					if o == osmem.OpMap {
						return osmem.ErrInjected
					}
					return nil
				})
				for range 40 {
					if _, err := Alloc[byte](s, 1<<20); err == nil {
						t.Error("Alloc succeeded with every map refused")
					}
				}
			}
			t.Cleanup(func() { afterRotationHold = nil; osmem.SetFault(nil) })
			err := s.RotateKey(nil, nil)
			afterRotationHold = nil
			osmem.SetFault(nil)
			if holds < 2 {
				t.Fatalf("the rotation took %d shard-lock holds, want several", holds)
			}
			if err != nil {
				t.Fatalf("RotateKey: %v", err)
			}
			verifyModel(t, s, m)
			mustCheck(t, s)
		})
	}
}
