package memshuffle

import (
	"bytes"
	"context"
	"errors"
	mrand "math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// faultOps drives a Shuffler through random operations while the system
// refuses some of its mmap, mlock and munmap calls, and checks every
// invariant after every step and every entry at the end.
func faultOps(t *testing.T, seed uint64, opts ...Option) {
	r := mrand.New(mrand.NewPCG(seed, 99))
	var failPct atomic.Int32
	var failOp atomic.Int32
	// Only this goroutine maps and unmaps (no background shuffler), so the
	// refusals replay with the seed.
	fr := mrand.New(mrand.NewPCG(seed, 7))
	osmem.SetFault(func(o osmem.Op) error {
		p := failPct.Load()
		if p == 0 || int32(o) != failOp.Load() {
			return nil
		}
		if fr.Int32N(100) < p {
			return osmem.ErrInjected
		}
		return nil
	})
	t.Cleanup(func() { osmem.SetFault(nil) })
	s := newOrSkip(t, opts...)
	vals := map[Handle][]byte{}
	var hs []Handle
	rented := map[Handle][]byte{}
	refused := map[string]int{}
	defer func() {
		if len(refused) == 0 && !t.Failed() {
			t.Errorf("seed %d: the system refused nothing", seed)
		}
	}()
	ok := func(err error, what string) bool {
		if err == nil {
			return true
		}
		if errors.Is(err, ErrOutOfMemory) || errors.Is(err, ErrLockFailed) || errors.Is(err, osmem.ErrInjected) {
			refused[what]++
			return false
		}
		t.Fatalf("%s: %v", what, err)
		return false
	}
	alloc := func(n int, typed bool) {
		var h Handle
		var err error
		if typed && n%8 == 0 {
			h, err = Alloc[uint64](s, n/8)
		} else {
			h, err = Alloc[byte](s, n)
		}
		if !ok(err, "Alloc") {
			return
		}
		b, err := RentSlice[byte](s, h)
		if !ok(err, "Rent") {
			if err := s.Free(h); err != nil {
				t.Fatal(err)
			}
			return
		}
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		vals[h] = bytes.Clone(b)
		if err := s.Return(h); err != nil {
			t.Fatalf("Return: %v", err)
		}
		hs = append(hs, h)
	}
	for step := range 300 {
		switch op := r.IntN(14); op {
		case 0:
			alloc(1+r.IntN(400), r.IntN(2) == 0)
		case 1:
			for range 150 + r.IntN(200) {
				alloc(200, false)
			}
		case 2:
			alloc(1+r.IntN(20000), false)
		case 3, 4:
			if len(hs) > 0 {
				k := r.IntN(len(hs))
				h := hs[k]
				if _, busy := rented[h]; busy {
					continue
				}
				if err := s.Free(h); err != nil {
					t.Fatalf("Free: %v", err)
				}
				delete(vals, h)
				hs = append(hs[:k], hs[k+1:]...)
			}
		case 5:
			if len(hs) > 0 {
				h := hs[r.IntN(len(hs))]
				if b, busy := rented[h]; busy {
					for i := range b {
						b[i] ^= 0x5a
					}
					vals[h] = bytes.Clone(b)
					if err := s.Return(h); err != nil {
						t.Fatalf("Return: %v", err)
					}
					delete(rented, h)
					continue
				}
				b, err := RentSlice[byte](s, h)
				if !ok(err, "Rent") {
					continue
				}
				if !bytes.Equal(b, vals[h]) {
					t.Fatalf("step %d: rented entry differs", step)
				}
				rented[h] = b
			}
		case 6, 7:
			ok(s.Shuffle(), "Shuffle")
		case 8:
			s.cycle(context.Background(), nil)
		case 9:
			s.SetShuffleOnBorrowReturn(r.IntN(2) == 0)
		case 10:
			failOp.Store(int32([]osmem.Op{osmem.OpMap, osmem.OpLock, osmem.OpUnmap, osmem.OpProtect}[r.IntN(4)]))
			failPct.Store(int32(r.IntN(3) * 40))
		case 11:
			// Free a run of entries: holes to compact.
			for k := 0; k < len(hs); k++ {
				h := hs[k]
				if _, busy := rented[h]; busy || r.IntN(3) != 0 {
					continue
				}
				if err := s.Free(h); err != nil {
					t.Fatal(err)
				}
				delete(vals, h)
				hs = append(hs[:k], hs[k+1:]...)
				k--
			}
		case 12:
			ok(s.RotateKey(nil, nil), "RotateKey")
		case 13:
			if len(hs) > 0 {
				h := hs[r.IntN(len(hs))]
				if _, busy := rented[h]; !busy {
					err := BorrowViewSlice(s, h, func(b []byte) error {
						if !bytes.Equal(b, vals[h]) {
							t.Fatalf("step %d: view differs", step)
						}
						return nil
					})
					ok(err, "View")
				}
			}
		}
		if err := s.check(); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
	}
	failPct.Store(0)
	for h, b := range rented {
		vals[h] = bytes.Clone(b)
		if err := s.Return(h); err != nil {
			t.Fatal(err)
		}
	}
	for h, want := range vals {
		if got := readAll(t, s, h); !bytes.Equal(got, want) {
			t.Fatalf("entry %v differs", h)
		}
	}
	// A refused munmap leaves its region mapped and locked, as a real
	// refusal would, and the Shuffler gives up on some of those regions
	// (the spares, backups and released arenas it unmaps outside a shard
	// lock). Once it is closed, give them back: kept, they held on to
	// their share of RLIMIT_MEMLOCK for the life of the process.
	osmem.SetFault(nil)
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := osmem.UnmapRefused(); err != nil {
		t.Fatal(err)
	}
}

// TestStoreFaultOps runs faultOps in each lock mode and with an
// authenticated cipher.
func TestStoreFaultOps(t *testing.T) {
	if raceBuild {
		t.Skip("one goroutine: nothing for the race detector to find, and its invariant checks several times as slow")
	}
	for seed := range uint64(3) {
		faultOps(t, seed, faultOpsOptions(seed)...)
	}
}

// faultOpsOptions are the options TestStoreFaultOps runs seed with.
func faultOpsOptions(seed uint64) []Option {
	opts := []Option{WithShards(2), WithArenaSize(4096)}
	switch seed % 3 {
	case 1:
		opts = append(opts, WithLockMode(LockStrict))
	case 2:
		opts = append(opts, WithCipher(AES256GCM))
	}
	return opts
}
