package memshuffle

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"math"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/store"
)

// model is the plain-map reference the randomized tests compare against.
type model map[Handle][]byte

func fill(r *mrand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(r.Uint32())
	}
}

func readAll(t testing.TB, s *Shuffler, h Handle) []byte {
	t.Helper()
	b, err := RentSlice[byte](s, h)
	if err != nil {
		t.Fatalf("RentSlice(%v): %v", h, err)
	}
	out := bytes.Clone(b)
	if err := s.Return(h); err != nil {
		t.Fatalf("Return(%v): %v", h, err)
	}
	return out
}

func verifyModel(t testing.TB, s *Shuffler, m model) {
	t.Helper()
	for h, want := range m {
		raw, err := rawBytes(s, h)
		if err != nil {
			t.Fatalf("entry %v: %v", h, err)
		}
		if len(want) >= 16 && bytes.Equal(raw, want) {
			t.Fatalf("entry %v rests in plaintext", h)
		}
		if got := readAll(t, s, h); !bytes.Equal(got, want) {
			t.Fatalf("entry %v: got %x, want %x", h, got, want)
		}
	}
	if st := s.Stats(); st.Entries != len(m) {
		t.Fatalf("Stats.Entries = %d, model has %d", st.Entries, len(m))
	}
}

// TestRandomOps runs the operation model (model_test.go) on random
// streams: every operation, the invariant check after every step, entries
// compared with the model as it goes and all of them at the end.
func TestRandomOps(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []Option
	}{
		{"ctr/1", []Option{WithShards(1)}},
		{"ctr/4", []Option{WithShards(4)}},
		{"gcm/2", []Option{WithShards(2), WithCipher(AES256GCM)}},
		{"chacha/2", []Option{WithShards(2), WithCipher(ChaCha20Poly1305)}},
		{"tracked/2", []Option{WithShards(2), WithRentTracking(time.Hour)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newTest(t, append(c.opts, WithArenaSize(4096))...)
			src := &randSource{r: mrand.New(mrand.NewPCG(uint64(len(c.name)), 7)), left: 3000}
			m := newOpModel(t, s, src)
			m.replay(uint64(len(c.name)), 2)
			m.run()
		})
	}
}

// TestLongLivedIntegrity keeps one value through heavy churn and many
// shuffles and rotations.
func TestLongLivedIntegrity(t *testing.T) {
	s := newTest(t, WithArenaSize(4096))
	type secret struct {
		A [48]byte
		N uint64
	}
	h, err := Create[secret](s)
	if err != nil {
		t.Fatal(err)
	}
	want := secret{N: 0x0123456789abcdef}
	rand.Read(want.A[:])
	p, err := Rent[secret](s, h)
	if err != nil {
		t.Fatal(err)
	}
	*p = want
	if err := s.Return(h); err != nil {
		t.Fatal(err)
	}
	r := mrand.New(mrand.NewPCG(1, 2))
	var churn []Handle
	for round := range 200 {
		for range 20 {
			c, err := Alloc[byte](s, 1+r.IntN(700))
			if err != nil {
				t.Fatal(err)
			}
			churn = append(churn, c)
		}
		for len(churn) > 30 {
			k := r.IntN(len(churn))
			if err := s.Free(churn[k]); err != nil {
				t.Fatal(err)
			}
			churn = append(churn[:k], churn[k+1:]...)
		}
		if err := s.Shuffle(); err != nil {
			t.Fatal(err)
		}
		if round%50 == 0 {
			if err := s.RotateKey(nil, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	mustCheck(t, s)
	p, err = Rent[secret](s, h)
	if err != nil {
		t.Fatal(err)
	}
	if *p != want {
		t.Fatal("long-lived value changed")
	}
	s.Return(h)
	if st := s.Stats(); st.Shuffles != 200 || st.BytesMoved == 0 || st.ArenasReleased == 0 {
		t.Fatalf("stats after churn: %+v", st)
	}
}

// TestAlignment checks that entries keep their type's alignment through
// every kind of move, with odd-sized entries around them.
func TestAlignment(t *testing.T) {
	type aligned struct {
		B byte
		U uint64
		C complex128
	}
	s := newTest(t, WithShards(1), WithArenaSize(4096))
	var hs []Handle
	var aligns []uintptr
	add := func(h Handle, err error, align uintptr) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
		aligns = append(aligns, align)
	}
	for i := range 50 {
		h, err := Alloc[byte](s, 1+2*i)
		add(h, err, 1)
		h, err = Create[uint64](s)
		add(h, err, unsafe.Alignof(uint64(0)))
		h, err = Alloc[float64](s, 3)
		add(h, err, unsafe.Alignof(float64(0)))
		h, err = Create[complex128](s)
		add(h, err, unsafe.Alignof(complex128(0)))
		h, err = Alloc[aligned](s, 2)
		add(h, err, unsafe.Alignof(aligned{}))
	}
	check := func() {
		t.Helper()
		for i, h := range hs {
			if a := addrOf(s, h); a%aligns[i] != 0 {
				t.Fatalf("entry %d at %#x, want alignment %d", i, a, aligns[i])
			}
		}
		mustCheck(t, s)
	}
	check()
	for range 5 {
		if err := s.Shuffle(); err != nil {
			t.Fatal(err)
		}
		check()
	}
	s.SetShuffleOnBorrowReturn(true)
	for range 3 {
		for _, h := range hs {
			if _, err := RentSlice[byte](s, h); err != nil {
				t.Fatal(err)
			}
			if err := s.Return(h); err != nil {
				t.Fatal(err)
			}
		}
		check()
	}
	// The Rent paths check alignment too.
	for i, h := range hs {
		if aligns[i] == 8 {
			p, err := Rent[uint64](s, h)
			if err != nil {
				t.Fatal(err)
			}
			if uintptr(unsafe.Pointer(p))%8 != 0 {
				t.Fatal("misaligned *uint64")
			}
			s.Return(h)
		}
	}
}

// TestRentedDoesNotMove checks that a rented pointer keeps its address and
// contents across shuffles, rotations and shuffle-on-return of others.
func TestRentedDoesNotMove(t *testing.T) {
	s := newTest(t, WithShards(2), WithArenaSize(4096))
	var others []Handle
	for range 100 {
		h, err := Alloc[uint32](s, 10)
		if err != nil {
			t.Fatal(err)
		}
		others = append(others, h)
	}
	h, err := Create[[4]uint64](s)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Rent[[4]uint64](s, h)
	if err != nil {
		t.Fatal(err)
	}
	*p = [4]uint64{1, 2, 3, 4}
	addr := uintptr(unsafe.Pointer(p))
	s.SetShuffleOnBorrowReturn(true)
	for i := range 20 {
		if err := s.Shuffle(); err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 {
			if err := s.RotateKey(nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		for _, o := range others[:10] {
			RentSlice[byte](s, o)
			s.Return(o)
		}
		if addrOf(s, h) != addr || *p != [4]uint64{1, 2, 3, 4} {
			t.Fatalf("rented entry moved or changed: %#x vs %#x, %v", addrOf(s, h), addr, *p)
		}
		mustCheck(t, s)
	}
	if err := s.Return(h); err != nil {
		t.Fatal(err)
	}
	p, _ = Rent[[4]uint64](s, h)
	if *p != [4]uint64{1, 2, 3, 4} {
		t.Fatal("value lost")
	}
	s.Return(h)
}

// TestShuffleLargeEntries moves entries larger than the arena cap, alone
// (the uniform layout), beside small ones (the general layout), by Shuffle,
// by shuffle-on-return and by the background shuffler: every one moves, its
// value intact, and no more memory is mapped than the entries need.
func TestShuffleLargeEntries(t *testing.T) {
	big := store.MaxArenaSize + 1
	skipOversizeUnderRace(t, big)
	for _, tc := range []struct {
		name  string
		sizes []int
	}{
		{"uniform", []int{big, big}},
		{"mixed", []int{big, 100, 2*store.MaxArenaSize + 4096, 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTest(t, WithShards(1), WithLockMode(LockNone))
			r := mrand.New(mrand.NewPCG(1, 2))
			m := model{}
			live := 0
			for _, n := range tc.sizes {
				h, err := Alloc[byte](s, n)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := RentSlice[byte](s, h)
				fill(r, b)
				m[h] = bytes.Clone(b)
				s.Return(h)
				live += n
			}
			for i := range shortOr(3, 1) {
				before := map[Handle]uintptr{}
				for h := range m {
					before[h] = addrOf(s, h)
				}
				if err := s.Shuffle(); err != nil {
					t.Fatalf("Shuffle %d: %v", i, err)
				}
				mustCheck(t, s)
				for h := range m {
					if addrOf(s, h) == before[h] {
						t.Fatalf("Shuffle %d left entry %v in place", i, h)
					}
				}
				// The entries, each rounded up to a 2 MiB huge page at
				// most, plus one shared arena.
				if st := s.Stats(); st.MappedBytes > int64(live)+int64(len(m))<<21+int64(store.MaxArenaSize) {
					t.Fatalf("Shuffle %d: %d bytes mapped for %d live", i, st.MappedBytes, live)
				}
			}
			verifyModel(t, s, m)

			s.SetShuffleOnBorrowReturn(true)
			for h := range m {
				at := addrOf(s, h)
				if _, err := RentSlice[byte](s, h); err != nil {
					t.Fatal(err)
				}
				if err := s.Return(h); err != nil {
					t.Fatal(err)
				}
				if addrOf(s, h) == at {
					t.Fatalf("shuffle-on-return left entry %v in place", h)
				}
			}
			mustCheck(t, s)
			verifyModel(t, s, m)

			stop, err := s.StartBackgroundShuffle(context.Background(), time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "two cycles", func() bool { return s.Stats().BackgroundCycles >= 2 })
			stop()
			mustCheck(t, s)
			verifyModel(t, s, m)

			// Freed, every dedicated arena goes back at once.
			for h := range m {
				if err := s.Free(h); err != nil {
					t.Fatal(err)
				}
			}
			mustCheck(t, s)
			if st := s.Stats(); st.MappedBytes > store.MaxArenaSize {
				t.Fatalf("after freeing everything: %d bytes mapped", st.MappedBytes)
			}
		})
	}
}

// TestLargeEntriesLargeArenas: with arenas larger than the default cap,
// entries that fit one share it, and an entry larger still gets an arena of
// its own size, not of the configured one.
func TestLargeEntriesLargeArenas(t *testing.T) {
	const arena = 64 << 20
	s := newTest(t, WithShards(1), WithLockMode(LockNone), WithArenaSize(arena))
	sizes := []int{17 << 20, 17 << 20, 17 << 20, arena + 1}
	live := 0
	for _, n := range sizes {
		if _, err := Alloc[byte](s, n); err != nil {
			t.Fatal(err)
		}
		live += n
	}
	// One shared arena per 64 MiB of the small ones, plus the large one
	// rounded to a huge page.
	limit := int64(live) + arena + 2<<20
	if st := s.Stats(); st.MappedBytes > limit {
		t.Fatalf("after Alloc: %d bytes mapped for %d live (limit %d)", st.MappedBytes, live, limit)
	}
	for i := range 2 {
		if err := s.Shuffle(); err != nil {
			t.Fatal(err)
		}
		mustCheck(t, s)
		if st := s.Stats(); st.MappedBytes > limit {
			t.Fatalf("after Shuffle %d: %d bytes mapped for %d live (limit %d)", i, st.MappedBytes, live, limit)
		}
	}
}

// TestStepAdoptsSpare: a background step moves entries into the spare
// region its cycle mapped, when the spare is large enough for the fresh
// arena the step needs, and leaves a spare too small to the cycle. No
// other path can take a spare: it is the cycle's own, handed to step.
func TestStepAdoptsSpare(t *testing.T) {
	s := newTest(t, WithShards(1), WithLockMode(LockNone), WithArenaSize(16<<10))
	want := map[Handle][]byte{}
	for i := range 64 {
		v := bytes.Repeat([]byte{byte(i + 1)}, 48)
		h, err := CopyFrom(s, bytes.Clone(v)) // CopyFrom wipes its source
		if err != nil {
			t.Fatal(err)
		}
		want[h] = v
	}
	sh := &s.shards[0]
	cycle := func(spare *osmem.Region) (left *osmem.Region, cur *store.Arena) {
		var later store.UnmapList
		sh.mu.Lock()
		sh.startCycle(sh.permutation(sh.bgOrder, int(sh.Slots.Len())), &later)
		// As after a refused spare: a step without one large enough maps
		// its fresh arena under the lock rather than stopping for one.
		const spareRefused = true
		for more := true; more; {
			more, _ = sh.step(&later, &spare, spareRefused)
		}
		cur = sh.Arenas.Cur()
		sh.mu.Unlock()
		later.UnmapAll(&s.aux)
		mustCheck(t, s)
		return spare, cur
	}
	small, err := s.mapAux(4 << 10)
	if err != nil {
		t.Fatal(err)
	}
	if left, cur := cycle(small); left != small || cur == nil || cur.Reg == small {
		t.Fatalf("a spare smaller than an arena was adopted (left %p, want %p)", left, small)
	}
	if err := s.aux.Unmap(small); err != nil {
		t.Fatal(err)
	}
	large, err := s.mapAux(64 << 10)
	if err != nil {
		t.Fatal(err)
	}
	auxBefore := s.aux.Unlocked()
	if left, cur := cycle(large); left != nil || cur == nil || cur.Reg != large {
		t.Fatalf("a large enough spare was not adopted (left %p, current arena %p)", left, cur)
	}
	if got := s.aux.Unlocked(); got != auxBefore-int64(len(large.Data)) {
		t.Fatalf("adopted spare still counted apart: %d unlocked outside arenas, want %d", got, auxBefore-int64(len(large.Data)))
	}
	for h, v := range want {
		if got := readAll(t, s, h); !bytes.Equal(got, v) {
			t.Fatalf("entry %v changed", h)
		}
	}
}

// TestShuffleOnReturn checks that the option moves the returned entry, and
// only when it is on.
func TestShuffleOnReturn(t *testing.T) {
	s := newTest(t, WithShards(1))
	h, err := Create[uint64](s)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip := func() (before, after uintptr) {
		p, err := Rent[uint64](s, h)
		if err != nil {
			t.Fatal(err)
		}
		before = uintptr(unsafe.Pointer(p))
		*p++
		if err := s.Return(h); err != nil {
			t.Fatal(err)
		}
		return before, addrOf(s, h)
	}
	for range 10 {
		if b, a := roundTrip(); a != b {
			t.Fatal("entry moved with shuffle-on-borrow-return off")
		}
	}
	s.SetShuffleOnBorrowReturn(true)
	for range 10 {
		if b, a := roundTrip(); a == b {
			t.Fatal("entry did not move with shuffle-on-borrow-return on")
		}
	}
	p, _ := Rent[uint64](s, h)
	if *p != 20 {
		t.Fatalf("value %d, want 20", *p)
	}
	s.Return(h)
	mustCheck(t, s)
}

// TestShuffleOnReturnBounded checks that memory stays bounded when only
// shuffle-on-return moves entries and Shuffle is never called.
func TestShuffleOnReturnBounded(t *testing.T) {
	s := newTest(t, WithShards(1), WithArenaSize(4096), WithShuffleOnBorrowReturn(true))
	var hs []Handle
	for range 2000 {
		h, err := Alloc[byte](s, 32)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	for i := range 200000 {
		h := hs[i%8]
		if _, err := RentSlice[byte](s, h); err != nil {
			t.Fatal(err)
		}
		if err := s.Return(h); err != nil {
			t.Fatal(err)
		}
	}
	mustCheck(t, s)
	st := s.Stats()
	if st.MappedBytes > 4*st.LiveBytes+64<<10 {
		t.Fatalf("mapped %d bytes for %d live", st.MappedBytes, st.LiveBytes)
	}
}

// TestRotateKey covers fixed and random keys, the wiping of the caller's
// arrays, and entries rented during a rotation.
func TestRotateKey(t *testing.T) {
	s := newTest(t, WithShards(2))
	m := model{}
	for i := range 64 {
		h, err := Alloc[byte](s, 1+i*13)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := RentSlice[byte](s, h)
		rand.Read(b)
		m[h] = bytes.Clone(b)
		s.Return(h)
	}
	var rentedH Handle
	for h := range m {
		rentedH = h
		break
	}
	rb, err := RentSlice[byte](s, rentedH)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := rawBytes(s, rentedH)

	key := [32]byte{1, 2, 3}
	salt := [8]byte{4, 5, 6}
	if err := s.RotateKey(&key, &salt); err != nil {
		t.Fatal(err)
	}
	if key != ([32]byte{}) || salt != ([8]byte{}) {
		t.Fatal("RotateKey left the caller's key or salt")
	}
	if after, _ := rawBytes(s, rentedH); !bytes.Equal(before, after) {
		t.Fatal("rotation touched a rented entry")
	}
	rb[0] ^= 0xff
	m[rentedH] = bytes.Clone(rb)
	if err := s.Return(rentedH); err != nil {
		t.Fatal(err)
	}
	verifyModel(t, s, m)
	// The same fixed key and salt again: data survives, and counter values
	// keep going up, so ciphertexts differ from the first time.
	snap := map[Handle][]byte{}
	for h := range m {
		snap[h], _ = rawBytes(s, h)
	}
	key, salt = [32]byte{1, 2, 3}, [8]byte{4, 5, 6}
	if err := s.RotateKey(&key, &salt); err != nil {
		t.Fatal(err)
	}
	for h := range m {
		if now, _ := rawBytes(s, h); len(now) >= 8 && bytes.Equal(now, snap[h]) {
			t.Fatal("rotation to the same key reproduced a ciphertext")
		}
	}
	for range 3 {
		if err := s.RotateKey(nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RotateKey(nil, &salt); err != nil {
		t.Fatal(err)
	}
	verifyModel(t, s, m)
	mustCheck(t, s)
	if got := s.Stats().KeyRotations; got != 6 {
		t.Fatalf("KeyRotations = %d", got)
	}
}

// TestFreshCiphertext checks that equal plaintexts never give equal
// ciphertexts: not in two entries, not in two writes of one entry.
func TestFreshCiphertext(t *testing.T) {
	s := newTest(t)
	secret := bytes.Repeat([]byte("same plaintext! "), 4)
	write := func(h Handle) {
		b, err := RentSlice[byte](s, h)
		if err != nil {
			t.Fatal(err)
		}
		copy(b, secret)
		if err := s.Return(h); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := Alloc[byte](s, len(secret))
	b, _ := Alloc[byte](s, len(secret))
	write(a)
	write(b)
	ca, _ := rawBytes(s, a)
	cb, _ := rawBytes(s, b)
	write(a)
	ca2, _ := rawBytes(s, a)
	if bytes.Equal(ca, cb) || bytes.Equal(ca, ca2) {
		t.Fatal("ciphertext repeated")
	}
	// No 16-byte block of keystream may repeat either: XOR of two
	// ciphertexts of the same plaintext is zero exactly where it would.
	for _, pair := range [][2][]byte{{ca, cb}, {ca, ca2}, {cb, ca2}} {
		for off := 0; off < len(secret); off += 16 {
			if bytes.Equal(pair[0][off:off+16], pair[1][off:off+16]) {
				t.Fatalf("keystream block reused at offset %d", off)
			}
		}
	}
	for _, c := range [][]byte{ca, cb, ca2} {
		if bytes.Contains(c, secret[:16]) {
			t.Fatal("plaintext at rest")
		}
	}
	mustCheck(t, s)
}

// TestFreeWipes checks that Free leaves no byte of the entry behind and
// that handles are never reused.
func TestFreeWipes(t *testing.T) {
	s := newTest(t, WithShards(1))
	keep, _ := Alloc[byte](s, 100)
	h, _ := Alloc[byte](s, 100)
	b, _ := RentSlice[byte](s, h)
	for i := range b {
		b[i] = 0xA5
	}
	s.Return(h)
	region := memOf(s, h)
	if err := s.Free(h); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, s) // checks every byte outside live entries is zero
	// The freed region is inside a still-mapped arena: read it directly.
	if !allZero(region) {
		t.Fatal("freed entry not wiped")
	}
	seen := map[Handle]bool{h: true, keep: true}
	for range 100 {
		n, err := Alloc[byte](s, 100)
		if err != nil {
			t.Fatal(err)
		}
		if seen[n] {
			t.Fatal("handle reused")
		}
		seen[n] = true
		if err := s.Free(n); err != nil {
			t.Fatal(err)
		}
	}
	mustCheck(t, s)
}

// TestConcurrent runs goroutines that allocate, rent, write, verify, free,
// shuffle and rotate at once. Run with -race.
func TestConcurrent(t *testing.T) {
	s := newTest(t, WithArenaSize(4096))
	const workers = 8
	iters := 3000
	if testing.Short() {
		iters = 500
	}
	var wg sync.WaitGroup
	errc := make(chan error, workers+2)
	stop := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := mrand.New(mrand.NewPCG(uint64(w), 99))
			type own struct {
				h   Handle
				val uint64
			}
			var mine []own
			for i := range iters {
				switch {
				case len(mine) < 20 || r.IntN(4) == 0:
					h, err := Alloc[uint64](s, 1+r.IntN(8))
					if err != nil {
						errc <- err
						return
					}
					mine = append(mine, own{h: h})
				case r.IntN(5) == 0:
					k := r.IntN(len(mine))
					if err := s.Free(mine[k].h); err != nil {
						errc <- err
						return
					}
					mine = append(mine[:k], mine[k+1:]...)
				default:
					o := &mine[r.IntN(len(mine))]
					v, err := RentSlice[uint64](s, o.h)
					if err != nil {
						errc <- err
						return
					}
					for j := range v {
						if want := o.val + uint64(j); (o.val == 0 && v[j] != 0) || (o.val != 0 && v[j] != want) {
							errc <- errors.New("value corrupted")
							return
						}
					}
					o.val = uint64(i+1) << 8
					for j := range v {
						v[j] = o.val + uint64(j)
					}
					if err := s.Return(o.h); err != nil {
						errc <- err
						return
					}
				}
			}
		}()
	}
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var err error
			switch i % 4 {
			case 0, 1:
				err = s.Shuffle()
			case 2:
				err = s.RotateKey(nil, nil)
			case 3:
				s.SetShuffleOnBorrowReturn(i%8 == 3)
				_ = s.Stats()
			}
			if err != nil {
				errc <- err
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	bg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	mustCheck(t, s)
}

// TestErrors is the table of bad inputs and the errors they give.
func TestErrors(t *testing.T) {
	s := newTest(t, WithShards(1))
	other := newTest(t)
	closed, _ := New()
	hClosed, _ := Create[uint64](closed)
	closed.Close()

	h8, _ := Create[uint64](s)  // 8 bytes, align 8
	hb, _ := Alloc[byte](s, 12) // 12 bytes, align 4
	hOther, _ := Create[uint64](other)
	freed, _ := Create[uint64](s)
	s.Free(freed)
	reused, _ := Create[uint64](s) // takes freed's slot
	rented, _ := Create[uint64](s)
	Rent[uint64](s, rented)
	forged := Handle{owner: s.id, id: uint64(7) << 56}
	var nilS *Shuffler
	var zeroS Shuffler
	var nilCtx context.Context

	type ptrs struct {
		A int
		P *int
	}
	type inner struct{ S string }
	type nested struct {
		A [2]inner
	}
	tests := []struct {
		name string
		err  error
		call func() error
	}{
		{"Alloc n=0", ErrInvalidSize, func() error { _, err := Alloc[byte](s, 0); return err }},
		{"Alloc n<0", ErrInvalidSize, func() error { _, err := Alloc[byte](s, -1); return err }},
		{"Alloc overflow", ErrInvalidSize, func() error { _, err := Alloc[uint64](s, math.MaxInt); return err }},
		{"Alloc too large", ErrInvalidSize, func() error { _, err := Alloc[[1024]byte](s, MaxEntrySize/1024+1); return err }},
		{"Alloc pointer", ErrUnsupportedType, func() error { _, err := Alloc[*int](s, 1); return err }},
		{"Alloc string", ErrUnsupportedType, func() error { _, err := Create[string](s); return err }},
		{"Alloc slice", ErrUnsupportedType, func() error { _, err := Create[[]byte](s); return err }},
		{"Alloc map", ErrUnsupportedType, func() error { _, err := Create[map[int]int](s); return err }},
		{"Alloc chan", ErrUnsupportedType, func() error { _, err := Create[chan int](s); return err }},
		{"Alloc func", ErrUnsupportedType, func() error { _, err := Create[func()](s); return err }},
		{"Alloc interface", ErrUnsupportedType, func() error { _, err := Create[any](s); return err }},
		{"Alloc unsafe.Pointer", ErrUnsupportedType, func() error { _, err := Create[unsafe.Pointer](s); return err }},
		{"Alloc struct with pointer", ErrUnsupportedType, func() error { _, err := Create[ptrs](s); return err }},
		{"Alloc nested string", ErrUnsupportedType, func() error { _, err := Create[nested](s); return err }},
		{"Alloc size 0", ErrUnsupportedType, func() error { _, err := Create[struct{}](s); return err }},
		{"Alloc [0]byte", ErrUnsupportedType, func() error { _, err := Alloc[[0]byte](s, 4); return err }},
		{"Rent zero handle", ErrInvalidHandle, func() error { _, err := Rent[byte](s, Handle{}); return err }},
		{"Rent forged handle", ErrInvalidHandle, func() error { _, err := Rent[byte](s, forged); return err }},
		{"Rent freed", ErrInvalidHandle, func() error { _, err := Rent[uint64](s, freed); return err }},
		{"Rent other shuffler", ErrInvalidHandle, func() error { _, err := Rent[uint64](s, hOther); return err }},
		{"Rent rented", ErrBusy, func() error { _, err := Rent[uint64](s, rented); return err }},
		{"Rent too large", ErrTypeMismatch, func() error { _, err := Rent[[2]uint64](s, h8); return err }},
		// atomic.Uint64: 8-byte aligned on every platform, where a uint64 is
		// only 4-byte aligned on 32-bit ones.
		{"Rent stricter alignment", ErrTypeMismatch, func() error { _, err := Rent[atomic.Uint64](s, hb); return err }},
		{"RentSlice not multiple", ErrTypeMismatch, func() error { _, err := RentSlice[[5]byte](s, hb); return err }},
		{"RentSlice pointer type", ErrUnsupportedType, func() error { _, err := RentSlice[*byte](s, hb); return err }},
		{"Return not rented", ErrNotRented, func() error { return s.Return(h8) }},
		{"Borrow nil func", ErrNilArgument, func() error { return Borrow[uint64](s, h8, nil) }},
		{"BorrowSlice nil func", ErrNilArgument, func() error { return BorrowSlice[byte](s, hb, nil) }},
		{"BorrowView nil func", ErrNilArgument, func() error { return BorrowView[uint64](s, h8, nil) }},
		{"BorrowViewSlice nil func", ErrNilArgument, func() error { return BorrowViewSlice[byte](s, hb, nil) }},
		{"RentContext nil context", ErrNilArgument, func() error { _, err := RentContext[uint64](nilCtx, s, rented); return err }},
		{"RentSliceContext nil context", ErrNilArgument, func() error { _, err := RentSliceContext[byte](nilCtx, s, hb); return err }},
		{"ViewContext nil context", ErrNilArgument, func() error { _, err := ViewContext[uint64](nilCtx, s, rented); return err }},
		{"ViewSliceContext nil context", ErrNilArgument, func() error { _, err := ViewSliceContext[byte](nilCtx, s, hb); return err }},
		{"StartBackgroundShuffle nil context", ErrNilArgument, func() error { _, err := s.StartBackgroundShuffle(nilCtx, 0); return err }},
		{"Return zero", ErrInvalidHandle, func() error { return s.Return(Handle{}) }},
		{"Return freed", ErrInvalidHandle, func() error { return s.Return(freed) }},
		{"Free rented", ErrBusy, func() error { return s.Free(rented) }},
		{"Free twice", ErrInvalidHandle, func() error { return s.Free(freed) }},
		{"Free zero", ErrInvalidHandle, func() error { return s.Free(Handle{}) }},
		{"Size freed", ErrInvalidHandle, func() error { _, err := s.Size(freed); return err }},
		{"closed Alloc", ErrClosed, func() error { _, err := Create[byte](closed); return err }},
		{"closed Rent", ErrClosed, func() error { _, err := Rent[uint64](closed, hClosed); return err }},
		{"closed Return", ErrClosed, func() error { return closed.Return(hClosed) }},
		{"closed Free", ErrClosed, func() error { return closed.Free(hClosed) }},
		{"closed Shuffle", ErrClosed, func() error { return closed.Shuffle() }},
		{"closed RotateKey", ErrClosed, func() error { return closed.RotateKey(nil, nil) }},
		{"closed Size", ErrClosed, func() error { _, err := closed.Size(hClosed); return err }},
		{"closed Close", nil, func() error { return closed.Close() }},
		{"nil Shuffler", ErrClosed, func() error { _, err := Create[byte](nilS); return err }},
		{"nil Shuffler Return", ErrClosed, func() error { return nilS.Return(h8) }},
		{"zero Shuffler", ErrClosed, func() error { _, err := Create[byte](&zeroS); return err }},
		{"zero Shuffler Shuffle", ErrClosed, func() error { return zeroS.Shuffle() }},
		{"zero Shuffler PublishExpvar", ErrClosed, func() error { return zeroS.PublishExpvar("memshuffle-test-zero") }},
		{"closed PublishExpvar", ErrClosed, func() error { return closed.PublishExpvar("memshuffle-test-closed") }},
		{"New bad shards", ErrInvalidOption, func() error { _, err := New(WithShards(3)); return err }},
		{"New zero shards", ErrInvalidOption, func() error { _, err := New(WithShards(0)); return err }},
		{"New bad arena", ErrInvalidOption, func() error { _, err := New(WithArenaSize(1)); return err }},
		{"New bad lock mode", ErrInvalidOption, func() error { _, err := New(WithLockMode(9)); return err }},
		{"New nil option", ErrInvalidOption, func() error { _, err := New(nil); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if tt.err == nil {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("got %v, want %v", err, tt.err)
			}
		})
	}
	if s.Valid(freed) || s.Valid(Handle{}) || s.Valid(hOther) || !s.Valid(reused) || closed.Valid(hClosed) || nilS.Valid(h8) {
		t.Fatal("Valid disagrees")
	}
	if reused == freed {
		t.Fatal("reused slot gave an equal handle")
	}
	if n, err := s.Size(hb); n != 12 || err != nil {
		t.Fatalf("Size = %d, %v", n, err)
	}
	if st := s.Stats(); st.Rented != 1 || st.Viewed != 0 {
		t.Fatalf("%d entries rented, %d viewed after the table, want only the one rent it set up", st.Rented, st.Viewed)
	}
	s.Return(rented)
	mustCheck(t, s)
}

// TestClose checks that Close wipes, unmaps and is idempotent, also with
// entries rented.
func TestClose(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	h, _ := Alloc[byte](s, 64)
	if _, err := RentSlice[byte](s, h); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Entries != 0 || st.MappedBytes != 0 || st.Arenas != 0 {
		t.Fatalf("after Close: %+v", st)
	}
	mustCheck(t, s)
}

func TestHandleString(t *testing.T) {
	if got := (Handle{}).String(); got != "memshuffle.Handle(zero)" {
		t.Fatal(got)
	}
	h := makeHandle(1, 3, 17, 2)
	if h.String() != "memshuffle.Handle(0000000000000001/3:17:2)" || h.shard() != 3 || h.slot() != 17 || h.gen() != 2 || h.IsZero() {
		t.Fatal(h.String())
	}
}
