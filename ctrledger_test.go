package memshuffle

import (
	"bytes"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"testing"

	"github.com/memshuffle/memshuffle/internal/seal"
	"github.com/memshuffle/memshuffle/internal/store"
)

// ctrLedger remembers every counter run any entry of a Shuffler was ever
// sealed under, over the whole life of the Shuffler, not only the runs
// resting at one moment (which check compares): a seal that took a run
// handed out before, even one no entry rests under any more, reuses
// keystream (CTR) or a nonce (the AEADs).
type ctrLedger struct {
	t     *testing.T
	s     *Shuffler
	runs  []ctrRun
	last  map[Handle]uint64
	plain map[Handle][]byte
}

func newCtrLedger(t *testing.T, s *Shuffler) *ctrLedger {
	return &ctrLedger{t: t, s: s, last: make(map[Handle]uint64), plain: make(map[Handle][]byte)}
}

// observe looks at h's resting entry: when its counter run is not the one
// last seen, the run must be disjoint from every run seen before, and with
// fresh set it must not be (h was just sealed again). Either way the
// resting bytes must open, under the cipher the slot says, at the slot's
// counter value, to the plaintext h was given.
func (l *ctrLedger) observe(h Handle, fresh bool, what string) {
	l.t.Helper()
	sh := &l.s.shards[h.shard()]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sl := sh.Slots.At(h.slot())
	if sl.State() != store.StateLive || sl.Gen() != h.gen() {
		l.t.Fatalf("%s: entry in state %d, want live", what, sl.State())
	}
	c := sh.cipherOf(sl)
	run := ctrRun{sl.Ctr(), sl.Ctr() + c.Counters(int(sl.Size))}
	old, seen := l.last[h]
	switch {
	case seen && old == run.lo && fresh:
		l.t.Fatalf("%s: sealed again under its old counter run at %d", what, run.lo)
	case !seen || old != run.lo:
		for _, r := range l.runs {
			if run.lo < r.hi && r.lo < run.hi {
				l.t.Fatalf("%s: sealed under counter run [%d,%d), which overlaps [%d,%d) used before", what, run.lo, run.hi, r.lo, r.hi)
			}
		}
		l.runs = append(l.runs, run)
		l.last[h] = run.lo
	}
	ext := bytes.Clone(sh.Extent(sl))
	out := make([]byte, sl.Size)
	var scr seal.Scratch
	binary.BigEndian.PutUint64(scr.AD[:8], h.owner)
	binary.BigEndian.PutUint64(scr.AD[8:], h.id)
	if err := c.Open(out, ext, sl.Ctr(), &scr); err != nil {
		l.t.Fatalf("%s: resting entry does not open: %v", what, err)
	}
	if !bytes.Equal(out, l.plain[h]) {
		l.t.Fatalf("%s: resting entry opens to other bytes than it holds", what)
	}
}

// step does one random operation that seals an entry, and observes it.
func (l *ctrLedger) step(rng *mrand.Rand, hs *[]Handle) {
	l.t.Helper()
	sizes := []int{1, 15, 16, 17, 32, 100, 1019, 4096, 70000}
	if len(*hs) < 4 || rng.IntN(8) == 0 {
		h, err := Alloc[byte](l.s, sizes[rng.IntN(len(sizes))])
		if err != nil {
			l.t.Fatal(err)
		}
		sz, _ := l.s.Size(h)
		l.plain[h] = make([]byte, sz)
		*hs = append(*hs, h)
		l.observe(h, true, "Alloc")
		return
	}
	h := (*hs)[rng.IntN(len(*hs))]
	switch rng.IntN(5) {
	case 0, 1: // Rent, write, Return
		b, err := RentSlice[byte](l.s, h)
		if err != nil {
			l.t.Fatal(err)
		}
		if !bytes.Equal(b, l.plain[h]) {
			l.t.Fatal("Rent: other bytes than were written")
		}
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		l.plain[h] = bytes.Clone(b)
		if err := l.s.Return(h); err != nil {
			l.t.Fatal(err)
		}
		l.observe(h, true, "Return")
	case 2: // two Views; the last ReturnView seals
		for range 2 {
			v, err := ViewSlice[byte](l.s, h)
			if err != nil {
				l.t.Fatal(err)
			}
			if !bytes.Equal(v, l.plain[h]) {
				l.t.Fatal("View: other bytes than were written")
			}
		}
		for range 2 {
			if err := l.s.ReturnView(h); err != nil {
				l.t.Fatal(err)
			}
		}
		l.observe(h, true, "ReturnView")
	case 3:
		l.s.SetShuffleOnBorrowReturn(rng.IntN(2) == 0)
	case 4:
		if err := l.s.Shuffle(); err != nil {
			l.t.Fatal(err)
		}
		for _, h := range *hs {
			l.observe(h, false, "Shuffle")
		}
	}
}

// TestEverySealTakesFreshCounters runs random Allocs, Rents, Views,
// Shuffles and key rotations, with and without moving returns, in each
// cipher mode, and checks with a ctrLedger after each one that every seal
// took a counter run never used before and that the entry rests as the
// general cipher interface would have sealed it. Some of the operations run
// while a RotateKey is between batches, when entries rest under both keys.
func TestEverySealTakesFreshCounters(t *testing.T) {
	for _, tc := range []struct {
		mode   Cipher
		secret bool
	}{{AES256CTR, false}, {AES256GCM, false}, {ChaCha20Poly1305, false}, {AES256CTR, true}} {
		mode := tc.mode
		t.Run(fmt.Sprintf("cipher=%v/secret=%v", mode, tc.secret), func(t *testing.T) {
			opts := []Option{WithShards(1), WithArenaSize(1 << 16), WithCipher(mode)}
			if tc.secret {
				// With the test's arena size: New refuses secret memory whose
				// one arena the memory-lock limit would not hold.
				probe, err := New(WithSecretMemory(), WithArenaSize(1<<16))
				if err != nil {
					t.Skip(err)
				}
				probe.Close()
				opts = append(opts, WithSecretMemory())
			}
			s := newTest(t, opts...)
			l := newCtrLedger(t, s)
			rng := mrand.New(mrand.NewPCG(1, uint64(mode)))
			var hs []Handle
			for range shortOr(300, 100) {
				l.step(rng, &hs)
			}
			for range shortOr(3, 2) {
				afterRotationHold = func() {
					for range 4 {
						l.step(rng, &hs)
					}
				}
				err := s.RotateKey(nil, nil)
				afterRotationHold = nil
				if err != nil {
					t.Fatal(err)
				}
				for _, h := range hs {
					l.observe(h, false, "RotateKey")
				}
				for range shortOr(50, 25) {
					l.step(rng, &hs)
				}
			}
		})
	}
}
