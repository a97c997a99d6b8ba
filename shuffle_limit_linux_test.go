package memshuffle

import (
	"bytes"
	"errors"
	mrand "math/rand/v2"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestShuffleAtLockLimitMovesEntries: in a process held to RLIMIT_MEMLOCK
// (nobody, ulimit -l 8192, as .ci/run runs it), one shard holding 60% of
// the limit in 32-byte entries, under secret memory or LockStrict, has no
// room to lock fresh arenas for a Shuffle beside its old ones. Shuffle
// then failed with ErrLockFailed every time, and only the packing into
// holes moved about 5% of the entries; now it still reports the refusal
// and moves the entries among the places of their size.
func TestShuffleAtLockLimitMovesEntries(t *testing.T) {
	lim := osmem.BindingLockLimit()
	if lim < 0 || lim > 64<<20 {
		t.Skip("needs a binding RLIMIT_MEMLOCK: run as nobody with ulimit -l 8192")
	}
	for _, c := range []struct {
		name string
		opts []Option
	}{
		{"secret", []Option{WithSecretMemory()}},
		{"strict", []Option{WithLockMode(LockStrict)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(append(c.opts, WithShards(1))...)
			if errors.Is(err, ErrNoSecretMemory) {
				t.Skip("no secret memory here")
			}
			if errors.Is(err, ErrLockFailed) {
				t.Skipf("the memory-lock limit holds no arena: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			r := mrand.New(mrand.NewPCG(11, 12))
			var hs []Handle
			kept := map[Handle][]byte{}
			for s.Stats().LiveBytes < lim*6/10 {
				h, err := Alloc[byte](s, 32)
				if errors.Is(err, ErrLockFailed) && len(hs) >= 256 {
					break // at the limit sooner, with secret memory's guard pages
				}
				if err != nil {
					t.Fatalf("Alloc after %d entries: %v", len(hs), err)
				}
				if len(hs)%64 == 0 {
					b, _ := RentSlice[byte](s, h)
					fill(r, b)
					kept[h] = bytes.Clone(b)
					s.Return(h)
				}
				hs = append(hs, h)
			}
			before := make([]uintptr, len(hs))
			for i, h := range hs {
				before[i] = addrOf(s, h)
			}
			err = s.Shuffle()
			t.Logf("limit %d, %d entries of 32 bytes in one shard: Shuffle: %v", lim, len(hs), err)
			// The fresh arenas cannot fit: the fallback must be what ran.
			if !errors.Is(err, ErrLockFailed) {
				t.Fatalf("Shuffle of %d bytes in one shard under a limit of %d: %v, want ErrLockFailed", len(hs)*32, lim, err)
			}
			mustCheck(t, s)
			stayed := 0
			for i, h := range hs {
				if addrOf(s, h) == before[i] {
					stayed++
				}
			}
			if stayed > len(hs)/20 {
				t.Fatalf("%d of %d entries kept their place", stayed, len(hs))
			}
			for h, want := range kept {
				if got := readAll(t, s, h); !bytes.Equal(got, want) {
					t.Fatalf("entry %v: got %x, want %x", h, got, want)
				}
			}
		})
	}
}
