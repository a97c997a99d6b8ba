package memshuffle

import (
	"bytes"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/seal"
)

// flightSize is an entry large enough to be encrypted in flight.
const flightSize = 1 << 20

// onFirstFlight makes the first flight of the test run f with the shard
// unlocked (later flights just fly), and returns the count of flights.
func onFirstFlight(t *testing.T, f func()) *atomic.Int32 {
	var n atomic.Int32
	inFlight = func(*shard, uint32) {
		if n.Add(1) == 1 {
			f()
		}
	}
	t.Cleanup(func() { inFlight = nil })
	return &n
}

// started runs f in a goroutine and returns its result's channel.
func started(f func() error) <-chan error {
	c := make(chan error, 1)
	go func() { c <- f() }()
	return c
}

// ends waits for c, failing the test if nothing comes within 10 seconds:
// a call that needs the shard of a flight would hang if the shard stayed
// locked.
func ends(t *testing.T, what string, c <-chan error) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not end: the shard stayed locked in flight", what)
		return nil
	}
}

// stillWaits checks that the call behind c has not ended after 50 ms. The
// flight it waits for cannot land before the test lets it, so a result
// here is never late: it is a call that did not wait.
func stillWaits(t *testing.T, what string, c <-chan error) {
	t.Helper()
	select {
	case err := <-c:
		t.Errorf("%s ended during the flight (%v): it must wait for the entry to land", what, err)
	case <-time.After(50 * time.Millisecond):
	}
}

// otherEntryWorks checks, while an entry of s's one shard is in flight,
// that the shard's other entries can be used meanwhile: small, of model
// m, is rented, checked and returned, and an entry made and freed. It
// fails the test if that waits for the flight.
func otherEntryWorks(t *testing.T, s *Shuffler, m model, small Handle) {
	t.Helper()
	err := ends(t, "work on another entry", started(func() error {
		b, err := RentSlice[byte](s, small)
		if err != nil {
			return err
		}
		if !bytes.Equal(b, m[small]) {
			return errors.New("the small entry changed")
		}
		if err := s.Return(small); err != nil {
			return err
		}
		h, err := Alloc[byte](s, 64)
		if err != nil {
			return err
		}
		return s.Free(h)
	}))
	if err != nil {
		t.Error(err)
	}
}

// setBytes rents h, writes byte(seed+j) at each j, and returns it.
func setBytes(t *testing.T, s *Shuffler, h Handle, seed int) []byte {
	t.Helper()
	b, err := RentSlice[byte](s, h)
	if err != nil {
		t.Fatal(err)
	}
	for j := range b {
		b[j] = byte(seed + j)
	}
	want := bytes.Clone(b)
	if err := s.Return(h); err != nil {
		t.Fatal(err)
	}
	return want
}

// TestFlightLeavesShardOpen: the encryption of a large entry at Alloc and
// Return, and its decryption at Rent and View, run with the shard unlocked,
// so the shard's other entries can be rented, returned, made and freed
// meanwhile; before, a 1 GiB entry held them all for hundreds of
// milliseconds. Everything holds its value after. The same holds in the
// authenticated modes, where the decryption moves the entry to a new place
// (openInFlight).
func TestFlightLeavesShardOpen(t *testing.T) {
	for _, tc := range []struct {
		op string
		c  Cipher
	}{
		{"Alloc", AES256CTR}, {"Rent", AES256CTR}, {"View", AES256CTR}, {"Return", AES256CTR},
		{"Alloc", AES256GCM}, {"Rent", AES256GCM}, {"View", AES256GCM}, {"Return", AES256GCM},
		{"Alloc", ChaCha20Poly1305}, {"Rent", ChaCha20Poly1305}, {"View", ChaCha20Poly1305}, {"Return", ChaCha20Poly1305},
	} {
		op := tc.op
		t.Run(fmt.Sprintf("%s/%v", op, tc.c), func(t *testing.T) {
			s := newTest(t, WithShards(1), WithCipher(tc.c))
			m := model{}
			small := allocPattern(t, s, m, 32, 1)
			var big Handle
			var want []byte
			if op != "Alloc" {
				big = allocPattern(t, s, m, flightSize+5, 2)
				want = m[big]
			}
			if op == "Return" {
				if _, err := RentSlice[byte](s, big); err != nil {
					t.Fatal(err)
				}
			}
			n := onFirstFlight(t, func() { otherEntryWorks(t, s, m, small) })
			var err error
			switch op {
			case "Alloc":
				big, err = Alloc[byte](s, flightSize+5)
				want = make([]byte, flightSize+5)
				m[big] = want
			case "Rent":
				var b []byte
				if b, err = RentSlice[byte](s, big); err == nil && !bytes.Equal(b, want) {
					t.Error("the rented entry is not its plaintext")
				}
				if err == nil {
					err = s.Return(big)
				}
			case "View":
				var b []byte
				if b, err = ViewSlice[byte](s, big); err == nil && !bytes.Equal(b, want) {
					t.Error("the viewed entry is not its plaintext")
				}
				if err == nil {
					err = s.ReturnView(big)
				}
			case "Return":
				err = s.Return(big)
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.Load() == 0 {
				t.Fatal("no encryption or decryption ran in flight")
			}
			verifyModel(t, s, m)
		})
	}
}

// TestFlightSameEntryWaits: a call given the Handle of an entry in flight
// waits for it to land, as it waited for the lock before, instead of
// failing with ErrBusy or seeing half-decrypted bytes: a Rent, a second
// View and a Free behind a Return, and a second View behind the first.
func TestFlightSameEntryWaits(t *testing.T) {
	for _, c := range []struct {
		name      string
		first     string // what flies: "Return" or "View"
		second    string // what waits: "Rent", "View" or "Free"
		wantAfter error
	}{
		{"RentBehindReturn", "Return", "Rent", nil},
		{"ViewBehindReturn", "Return", "View", nil},
		{"FreeBehindReturn", "Return", "Free", nil},
		{"ViewBehindView", "View", "View", nil},
		{"RentBehindView", "View", "Rent", ErrBusy},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newTest(t, WithShards(1))
			big, err := Alloc[byte](s, flightSize)
			if err != nil {
				t.Fatal(err)
			}
			want := setBytes(t, s, big, 3)
			if c.first == "Return" {
				if _, err := RentSlice[byte](s, big); err != nil {
					t.Fatal(err)
				}
			}
			var got []byte
			var second <-chan error
			n := onFirstFlight(t, func() {
				second = started(func() error {
					var err error
					switch c.second {
					case "Rent":
						got, err = RentSlice[byte](s, big)
					case "View":
						got, err = ViewSlice[byte](s, big)
					case "Free":
						err = s.Free(big)
					}
					return err
				})
				stillWaits(t, c.second, second)
			})
			if c.first == "Return" {
				err = s.Return(big)
			} else {
				var b []byte
				b, err = ViewSlice[byte](s, big)
				if err == nil && !bytes.Equal(b, want) {
					t.Error("the first view is not the plaintext")
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.Load() == 0 {
				t.Fatal("nothing ran in flight")
			}
			if err := ends(t, c.second, second); !errors.Is(err, c.wantAfter) || (err == nil) != (c.wantAfter == nil) {
				t.Fatalf("%s after the flight: %v, want %v", c.second, err, c.wantAfter)
			}
			if err == nil && got != nil && !bytes.Equal(got, want) {
				t.Errorf("%s saw bytes that are not the plaintext", c.second)
			}
			// End what is still borrowed.
			if c.first == "View" {
				if err := s.ReturnView(big); err != nil {
					t.Fatal(err)
				}
			}
			switch {
			case c.wantAfter != nil, c.second == "Free":
			case c.second == "Rent":
				err = s.Return(big)
			case c.second == "View":
				err = s.ReturnView(big)
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.second != "Free" {
				holdsValue(t, s, big, want)
			}
		})
	}
}

// TestFlightDrains: Close, Purge and RotateKey wait for an entry in flight
// to land before they take the keys or the memory from under it. Without
// that, Purge wiped an entry that the Rent in flight then filled with
// keystream, Close unmapped it under the XOR, and a rotation passed over a
// Return in flight, which then landed under the old key that the
// rotation's end wiped: the entry was lost.
func TestFlightDrains(t *testing.T) {
	for _, c := range []struct{ call, during string }{
		{"Purge", "Rent"}, {"Purge", "Return"},
		{"Close", "Rent"}, {"Close", "Return"},
		{"RotateKey", "Rent"}, {"RotateKey", "Return"},
	} {
		t.Run(c.call+"During"+c.during, func(t *testing.T) {
			s := newTest(t, WithShards(1))
			big, err := Alloc[byte](s, flightSize)
			if err != nil {
				t.Fatal(err)
			}
			want := setBytes(t, s, big, 4)
			var mem []byte
			if c.during == "Return" {
				if mem, err = RentSlice[byte](s, big); err != nil {
					t.Fatal(err)
				}
			}
			var call <-chan error
			n := onFirstFlight(t, func() {
				call = started(func() error {
					switch c.call {
					case "Purge":
						return s.Purge()
					case "Close":
						return s.Close()
					}
					return s.RotateKey(nil, nil)
				})
				stillWaits(t, c.call, call)
			})
			if c.during == "Rent" {
				mem, err = RentSlice[byte](s, big)
			} else {
				err = s.Return(big)
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.Load() == 0 {
				t.Fatal("nothing ran in flight")
			}
			if err := ends(t, c.call, call); err != nil {
				t.Fatal(err)
			}
			switch c.call {
			case "Purge":
				if !bytes.Equal(mem, make([]byte, len(mem))) {
					t.Error("the entry holds bytes after Purge")
				}
			case "RotateKey":
				if c.during == "Rent" {
					if !bytes.Equal(mem, want) {
						t.Error("the rent in flight did not give the plaintext")
					}
					if err := s.Return(big); err != nil {
						t.Fatal(err)
					}
				}
				holdsValue(t, s, big, want)
			}
		})
	}
}

// TestFlightExpires: a deadline that passes while a Return is in flight,
// and that a sweep meanwhile found due and held for the Return, ends the
// borrow with ErrExpired and the entry wiped, as for a deadline that
// passed before the Return; it does not land live with a held deadline.
func TestFlightExpires(t *testing.T) {
	clk := newTestClock(time.Unix(1e9, 0))
	s := newTest(t, WithShards(1), withClock(clk))
	big, err := Alloc[byte](s, flightSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetExpiry(big, clk.time().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := RentSlice[byte](s, big); err != nil {
		t.Fatal(err)
	}
	onFirstFlight(t, func() {
		clk.advance(2 * time.Second)
		// An Alloc sweeps due entries: this one is borrowed, so it is held.
		if err := ends(t, "Alloc", started(func() error {
			_, err := Alloc[byte](s, 32)
			return err
		})); err != nil {
			t.Error(err)
		}
	})
	if err := s.Return(big); !errors.Is(err, ErrExpired) {
		t.Fatalf("Return of an entry that expired in flight: %v, want ErrExpired", err)
	}
	if _, err := RentSlice[byte](s, big); !errors.Is(err, ErrExpired) {
		t.Fatalf("Rent after: %v, want ErrExpired", err)
	}
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
}

// holdsValue checks that h holds want, without printing a megabyte when not.
func holdsValue(t *testing.T, s *Shuffler, h Handle, want []byte) {
	t.Helper()
	got := readAll(t, s, h)
	if len(got) != len(want) {
		t.Fatalf("the entry is %d bytes, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("the entry differs from what was written at byte %d of %d", i, len(got))
		}
	}
}

// TestFlightRotationEndWaits: a Rent in flight that decrypts with the
// rotation's old key, taken after the switch, keeps the rotation from
// wiping that key until it lands; the rotation's pass leaves the rented
// entry alone, so it reaches its end first.
func TestFlightRotationEndWaits(t *testing.T) {
	s := newTest(t, WithShards(1))
	m := model{}
	for i := range 64 { // four batches before the large entry's slot
		allocPattern(t, s, m, 4096, i)
	}
	big, err := Alloc[byte](s, flightSize)
	if err != nil {
		t.Fatal(err)
	}
	want := setBytes(t, s, big, 5)
	var rotated atomic.Bool
	var rent <-chan error
	var got []byte
	flying := make(chan struct{})
	holds := 0
	afterRotationHold = func() {
		if holds++; holds != 1 {
			return
		}
		rent = started(func() error {
			var err error
			got, err = RentSlice[byte](s, big)
			return err
		})
		<-flying
	}
	var once sync.Once // the Rent's flight, not the Return's after
	inFlight = func(*shard, uint32) {
		once.Do(func() {
			close(flying)
			// In flight until the rotation ends, or long enough to show
			// that it waits.
			for end := time.Now().Add(200 * time.Millisecond); !rotated.Load() && time.Now().Before(end); {
				time.Sleep(time.Millisecond)
			}
		})
	}
	t.Cleanup(func() { afterRotationHold, inFlight = nil, nil })
	err = s.RotateKey(nil, nil)
	rotated.Store(true)
	if err != nil {
		t.Fatal(err)
	}
	if rent == nil {
		t.Fatal("the rotation made no hold")
	}
	if err := ends(t, "Rent", rent); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the Rent in flight was decrypted with a wiped key")
	}
	if err := s.Return(big); err != nil {
		t.Fatal(err)
	}
	holdsValue(t, s, big, want)
	m[big] = want
	verifyModel(t, s, m)
}

// TestFlightEndPinnedWaits: a Borrow function whose entry another
// goroutine Returns, and which returns while that Return is in flight,
// waits for it to land instead of sealing the entry a second time under
// the XOR.
func TestFlightEndPinnedWaits(t *testing.T) {
	s := newTest(t, WithShards(1))
	big, err := Alloc[byte](s, flightSize)
	if err != nil {
		t.Fatal(err)
	}
	flying := make(chan struct{})
	t.Cleanup(func() { inFlight = nil })
	var want []byte
	var ret <-chan error
	err = BorrowSlice(s, big, func(b []byte) error {
		for j := range b {
			b[j] = byte(j * 3)
		}
		want = bytes.Clone(b)
		var once sync.Once // the Return's flight, not fn's own seal after
		inFlight = func(*shard, uint32) {
			once.Do(func() {
				close(flying)
				time.Sleep(100 * time.Millisecond) // for fn to return meanwhile
			})
		}
		ret = started(func() error { return s.Return(big) })
		<-flying
		return nil
	})
	if err != nil && !errors.Is(err, ErrNotRented) {
		t.Fatalf("BorrowSlice: %v", err)
	}
	if err := ends(t, "Return", ret); err != nil {
		t.Fatal(err)
	}
	holdsValue(t, s, big, want)
}

// TestFlightStress: goroutines rent, view, return, clone, make and free
// entries from 32 bytes to 256 KiB in one shard, many of them in flight at
// once, while keys rotate and the collector runs; each goroutine owns its
// entries and checks them after every step, and the invariants hold
// throughout and after. A Close or a Purge ends each round while the
// goroutines are still at it: each gets ErrClosed and nothing else. It
// runs with and without shuffle-on-borrow-return (large entries then move
// in flight at every Return) and in each cipher.
func TestFlightStress(t *testing.T) {
	sizes := []int{32, 4096, unlockedMin, unlockedMin + 5, 100 << 10, 256 << 10}
	for _, c := range []struct {
		end    string
		moving bool // shuffle-on-borrow-return: large entries move in flight
		cipher Cipher
	}{
		{"Close", false, AES256CTR}, {"Purge", false, AES256CTR}, {"Close", true, AES256CTR}, {"Purge", true, AES256CTR},
		{"Close", true, AES256GCM}, {"Purge", false, AES256GCM}, {"Close", false, ChaCha20Poly1305}, {"Purge", true, ChaCha20Poly1305},
	} {
		t.Run(fmt.Sprintf("%s/moving=%v/%v", c.end, c.moving, c.cipher), func(t *testing.T) {
			end := c.end
			s, err := New(WithShards(1), WithShuffleOnBorrowReturn(c.moving), WithCipher(c.cipher))
			if err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					flightWorker(t, s, g, sizes, stop)
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := s.RotateKey(nil, nil); err != nil && !errors.Is(err, ErrClosed) {
						t.Error(err)
						return
					}
					if err := s.check(); err != nil && !errors.Is(err, ErrClosed) {
						t.Error(err)
						return
					}
					runtime.GC()
				}
			}()
			time.Sleep(500 * time.Millisecond)
			if end == "Close" {
				err = s.Close()
			} else {
				err = s.Purge()
			}
			if err != nil {
				t.Error(err)
			}
			close(stop)
			wg.Wait()
			s.Close()
		})
	}
}

// flightWorker is one goroutine of TestFlightStress.
func flightWorker(t *testing.T, s *Shuffler, g int, sizes []int, stop <-chan struct{}) {
	rng := mrand.New(mrand.NewPCG(uint64(g), 7))
	type entry struct {
		h    Handle
		want []byte
	}
	var own []entry
	fail := func(what string, err error) bool {
		if errors.Is(err, ErrClosed) {
			return true
		}
		t.Errorf("worker %d: %s: %v", g, what, err)
		return true
	}
	for step := 0; ; step++ {
		select {
		case <-stop:
			return
		default:
		}
		switch op := rng.IntN(6); {
		case op == 0 || len(own) < 2:
			n := sizes[rng.IntN(len(sizes))]
			h, err := Alloc[byte](s, n)
			if err != nil {
				if fail("Alloc", err) {
					return
				}
			}
			own = append(own, entry{h, make([]byte, n)})
		case op == 1:
			k := rng.IntN(len(own))
			if err := s.Free(own[k].h); err != nil && fail("Free", err) {
				return
			}
			own = append(own[:k], own[k+1:]...)
		case op == 2:
			// Borrow functions, not Rent: Close unmaps under a rent, and
			// the worker would fault reading it.
			e := &own[rng.IntN(len(own))]
			same := true
			err := BorrowSlice(s, e.h, func(b []byte) error {
				same = bytes.Equal(b, e.want)
				for j := range b {
					b[j] = byte(step + j)
				}
				copy(e.want, b)
				return nil
			})
			if err != nil && fail("BorrowSlice", err) {
				return
			}
			if !same {
				t.Errorf("worker %d: a borrowed entry is not what was written", g)
				return
			}
		case op == 3:
			e := own[rng.IntN(len(own))]
			same := true
			err := BorrowViewSlice(s, e.h, func(b []byte) error {
				same = bytes.Equal(b, e.want)
				return nil
			})
			if err != nil && fail("BorrowViewSlice", err) {
				return
			}
			if !same {
				t.Errorf("worker %d: a viewed entry is not what was written", g)
				return
			}
		default:
			e := own[rng.IntN(len(own))]
			c, err := Clone(s, e.h)
			if err != nil {
				if fail("Clone", err) {
					return
				}
			}
			own = append(own, entry{c, bytes.Clone(e.want)})
		}
	}
}

// TestFlightRotationLargeEntry: a key rotation re-encrypts an entry larger
// than its 64 KiB batches with the shard unlocked too, in every cipher, so
// the shard's other entries go on meanwhile, a Rent of the large entry
// waits for it to land under the new key, and nothing is lost.
func TestFlightRotationLargeEntry(t *testing.T) {
	for _, c := range []Cipher{AES256CTR, AES256GCM, ChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) { testFlightRotationLargeEntry(t, c) })
	}
}

func testFlightRotationLargeEntry(t *testing.T, c Cipher) {
	s := newTest(t, WithShards(1), WithCipher(c))
	if k, ok := seal.CTR(s.shards[0].ciph); ok && !k.OffHeap() {
		t.Skip("round keys on the heap (no AES-NI): the rotation re-encrypts in its hold")
	}
	m := model{}
	small := allocPattern(t, s, m, 32, 6)
	big, err := Alloc[byte](s, flightSize+7)
	if err != nil {
		t.Fatal(err)
	}
	want := setBytes(t, s, big, 7)
	var rent <-chan error
	var got []byte
	n := onFirstFlight(t, func() {
		if err := ends(t, "Rent+Return of another entry", started(func() error {
			if _, err := RentSlice[byte](s, small); err != nil {
				return err
			}
			return s.Return(small)
		})); err != nil {
			t.Error(err)
		}
		rent = started(func() error {
			var err error
			got, err = RentSlice[byte](s, big)
			return err
		})
		stillWaits(t, "Rent of the entry in flight", rent)
	})
	if err := s.RotateKey(nil, nil); err != nil {
		t.Fatal(err)
	}
	if n.Load() == 0 {
		t.Fatal("the rotation put nothing in flight")
	}
	if err := ends(t, "Rent", rent); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the entry re-encrypted in flight does not decrypt to its plaintext")
	}
	if err := s.Return(big); err != nil {
		t.Fatal(err)
	}
	holdsValue(t, s, big, want)
	m[big] = want
	verifyModel(t, s, m)
}
