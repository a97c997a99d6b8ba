package memshuffle

import (
	"bytes"
	mrand "math/rand/v2"
	"testing"
)

// storeOps extends the operation model with what reaches the engine's
// rarer paths: entries of many sizes and alignments, batches of one size
// large enough for the shuffle on a grid and in place, mass frees that
// leave holes for compaction, and typed allocations of every alignment.
type storeOps struct {
	*opModel
}

func (m *storeOps) extra(op byte) {
	s := m.s
	switch op {
	case 0: // an entry of an odd or aligned size
		sizes := []int{1, 3, 7, 8, 12, 15, 16, 17, 24, 31, 32, 40, 48, 63, 64, 96, 100, 128, 200, 256, 1000, 1024, 4000, 4096, 5000}
		n := sizes[int(m.byte())%len(sizes)]
		h, err := Alloc[byte](s, n)
		if err != nil {
			m.fatalf("Alloc(%d): %v", n, err)
		}
		m.alloced(h, n)
	case 1: // typed entries: every alignment a Go type has
		var h Handle
		var err error
		var n int
		switch m.byte() % 4 {
		case 0:
			n = 2 * (1 + int(m.byte()%9))
			h, err = Alloc[uint16](s, n/2)
		case 1:
			n = 4 * (1 + int(m.byte()%9))
			h, err = Alloc[uint32](s, n/4)
		case 2:
			n = 8 * (1 + int(m.byte()%9))
			h, err = Alloc[uint64](s, n/8)
		case 3:
			n = 24
			h, err = Create[struct {
				A uint64
				B [2]uint64
			}](s)
		}
		if err != nil {
			m.fatalf("typed Alloc(%d): %v", n, err)
		}
		m.alloced(h, n)
	case 2: // a batch of one size: the shuffle's grid and in-place paths
		sizes := []int{64, 128, 144, 256, 1000}
		n := sizes[int(m.byte())%len(sizes)]
		k := 200 + int(m.byte())
		for range k {
			h, err := Alloc[byte](s, n)
			if err != nil {
				m.fatalf("Alloc(%d): %v", n, err)
			}
			m.alloced(h, n)
			// Distinct contents, so a mix-up shows.
			b, err := RentSlice[byte](s, h)
			if err != nil {
				m.fatalf("Rent: %v", err)
			}
			for j := range b {
				b[j] = byte(len(m.hs) + 3*j)
			}
			m.values[h] = bytes.Clone(b)
			if err := s.Return(h); err != nil {
				m.fatalf("Return: %v", err)
			}
		}
	case 3: // free many: holes everywhere
		keep := 1 + int(m.byte()%4)
		var victims []Handle
		for k, h := range m.hs {
			if k%(keep+1) != 0 && !m.borrowed(h) {
				victims = append(victims, h)
			}
		}
		for _, h := range victims {
			if err := s.Free(h); err != nil {
				m.fatalf("Free: %v", err)
			}
			m.forget(h)
		}
	case 4: // free every entry not borrowed
		var victims []Handle
		for _, h := range m.hs {
			if !m.borrowed(h) {
				victims = append(victims, h)
			}
		}
		for _, h := range victims {
			if err := s.Free(h); err != nil {
				m.fatalf("Free: %v", err)
			}
			m.forget(h)
		}
	}
}

// storeExtraOps is the number of operations extra knows; each is drawn
// twice as often as one of the model's own.
const storeExtraOps = 5

// run is opModel.run with the extra operations mixed in.
func (m *storeOps) run() {
	m.t.Helper()
	for m.step = 0; !m.ended && !m.purged; m.step++ {
		op := m.byte()
		if int(op)%(opCount+storeExtraOps*2) >= opCount {
			m.extra(byte((int(op)%(opCount+storeExtraOps*2) - opCount) / 2))
		} else {
			m.op(op % opCount)
		}
		m.settle()
		if err := m.s.check(); err != nil {
			m.fatalf("after op %d: %v", op, err)
		}
		if !m.purged {
			m.spotCheck()
		}
	}
	if m.purged {
		return
	}
	m.endAll()
	for h, want := range m.values {
		if got := readAll(m.t, m.s, h); !bytes.Equal(got, want) {
			m.fatalf("entry %v: got %x, want %x", h, got, want)
		}
	}
	if err := m.s.check(); err != nil {
		m.fatalf("at the end: %v", err)
	}
}

// TestStoreRandomOps runs the operation model with the extra
// operations: the invariant check after every step, entries compared with
// the model as it goes and all of them at the end.
func TestStoreRandomOps(t *testing.T) {
	if raceBuild {
		t.Skip("one goroutine: nothing for the race detector to find, and its invariant checks several times as slow")
	}
	for seed := uint64(1); seed <= 2; seed++ {
		for _, c := range []struct {
			name string
			opts []Option
		}{
			{"ctr/1", []Option{WithShards(1)}},
			{"gcm/2", []Option{WithShards(2), WithCipher(AES256GCM)}},
		} {
			s := newTest(t, append(c.opts, WithArenaSize(4096))...)
			src := &randSource{r: mrand.New(mrand.NewPCG(seed, 11)), left: 1500}
			m := &storeOps{newOpModel(t, s, src)}
			m.run()
		}
	}
}

// TestStoreRandomOpsSecret is TestStoreRandomOps on secret
// memory (memfd_secret), whose regions count their guard pages as locked.
func TestStoreRandomOpsSecret(t *testing.T) {
	if raceBuild {
		t.Skip("one goroutine: nothing for the race detector to find, and its invariant checks several times as slow")
	}
	skipUnderLockLimit(t, 1<<20)
	s0, err := New(WithSecretMemory())
	if err != nil {
		t.Skip(err)
	}
	s0.Close()
	for seed := uint64(1); seed <= 2; seed++ {
		s := newTest(t, WithShards(2), WithArenaSize(4096), WithSecretMemory())
		src := &randSource{r: mrand.New(mrand.NewPCG(seed, 13)), left: 1500}
		m := &storeOps{newOpModel(t, s, src)}
		m.run()
	}
}
