package memshuffle

import (
	"bytes"
	"crypto/rand"
	"math"
	"testing"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/ctr"
	"github.com/memshuffle/memshuffle/internal/seal"
)

// newTestCipher returns a cipher of mode m under a random key and salt.
func newTestCipher(t *testing.T, m seal.Mode) seal.Cipher {
	t.Helper()
	var key [32]byte
	var salt [8]byte
	rand.Read(key[:])
	rand.Read(salt[:])
	c, err := seal.New(m, &key, &salt, new([ctr.StateSize]byte))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestXORCTRMatchesInterface holds the direct path of the default cipher
// (shortCTR, XORShort and XORShortInPlace, as take, open, seal, sealTo
// and alloc take it) to the bytes
// the seal.Cipher interface gives: at every length around the assembly's
// batches up to its one-call limit, in place and out of place, and at
// counter values up to the last usable one. Past the limit, and for the
// AEADs, shortCTR must decline.
func TestXORCTRMatchesInterface(t *testing.T) {
	if !aesctr.Supported() {
		t.Skip("no AES-NI assembly here: the direct path is never taken")
	}
	c := newTestCipher(t, seal.AES256CTR)
	var lengths []int
	for n := 0; n <= 300; n++ {
		lengths = append(lengths, n)
	}
	lengths = append(lengths, 4095, 4096, 4097, ctr.ShortMax-1, ctr.ShortMax)
	src := make([]byte, ctr.ShortMax)
	rand.Read(src)
	var scrA, scrB seal.Scratch
	for _, n := range lengths {
		k := shortCTR(c, n)
		if k == nil {
			t.Fatalf("n=%d: the default cipher does not take the direct path", n)
		}
		// seal and alloc count the run of the direct path themselves.
		if got, want := ctr.Blocks(n), c.Counters(n); got != want {
			t.Fatalf("n=%d: the direct path takes %d counter values, Counters %d", n, got, want)
		}
		last := math.MaxUint64 - ctr.Blocks(n) + 1 // the run must not pass 2^64
		for _, base := range []uint64{0, 1, 0xfffffffe, 1 << 40, last} {
			want := make([]byte, n)
			c.Seal(want, src[:n], base, &scrB)

			got := make([]byte, n)
			k.XORShort(got, src[:n], base, &scrA.KS)
			if !bytes.Equal(got, want) {
				t.Fatalf("n=%d base=%#x: out of place differs from Seal", n, base)
			}
			inPlace := bytes.Clone(src[:n])
			k.XORShort(inPlace, inPlace, base, &scrA.KS)
			if !bytes.Equal(inPlace, want) {
				t.Fatalf("n=%d base=%#x: in place differs from Seal", n, base)
			}
			inPlace = bytes.Clone(src[:n])
			k.XORShortInPlace(inPlace, base, &scrA.KS)
			if !bytes.Equal(inPlace, want) {
				t.Fatalf("n=%d base=%#x: XORShortInPlace differs from Seal", n, base)
			}
			// Decryption is the same XOR, as Open does it.
			back := make([]byte, n)
			if err := c.Open(back, want, base, &scrB); err != nil {
				t.Fatal(err)
			}
			k.XORShort(got, got, base, &scrA.KS)
			if !bytes.Equal(got, back) || !bytes.Equal(got, src[:n]) {
				t.Fatalf("n=%d base=%#x: decryption differs from Open", n, base)
			}
			if scrA.KS != ([ctr.ScratchSize]byte{}) {
				t.Fatalf("n=%d: keystream left in the scratch", n)
			}
		}
	}
	if shortCTR(c, ctr.ShortMax+1) != nil {
		t.Error("shortCTR takes an input longer than one assembly call")
	}
	for _, m := range []seal.Mode{seal.AES256GCM, seal.ChaCha20Poly1305} {
		if shortCTR(newTestCipher(t, m), 32) != nil {
			t.Errorf("shortCTR takes %v", m)
		}
	}
}

// TestRestingCiphertextMatchesInterface checks, through the Shuffler,
// that what Alloc, Return (in place and moving) and ReturnView leave in
// the arena is the encryption the seal.Cipher interface gives of the
// entry's plaintext at the slot's counter value, and that Rent hands back
// what the interface decrypts: the direct path of the default cipher
// encrypts exactly as the general one, at sizes on both sides of its limit.
func TestRestingCiphertextMatchesInterface(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// resting decrypts h's entry as it rests, through the interface.
	resting := func(h Handle) []byte {
		sh := &s.shards[h.shard()]
		sh.mu.Lock()
		defer sh.mu.Unlock()
		sl := sh.Slots.At(h.slot())
		ext := sh.Extent(sl)
		out := make([]byte, sl.Size)
		var scr seal.Scratch
		if err := sh.cipherOf(sl).Open(out, ext, sl.Ctr(), &scr); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, n := range []int{1, 15, 16, 17, 32, 100, 1019, 4096, ctr.ShortMax, ctr.ShortMax + 1, 3*ctr.ShortMax + 5, 3*256<<10 + 5} { // the last in pieces
		h, err := Alloc[byte](s, n)
		if err != nil {
			t.Fatal(err)
		}
		if got := resting(h); !bytes.Equal(got, make([]byte, n)) {
			t.Fatalf("n=%d: Alloc's ciphertext does not decrypt to zeros", n)
		}
		want := make([]byte, n)
		for _, move := range []bool{false, true} {
			s.SetShuffleOnBorrowReturn(move)
			b, err := RentSlice[byte](s, h)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, want) {
				t.Fatalf("n=%d move=%v: Rent gives other bytes than were written", n, move)
			}
			rand.Read(want)
			copy(b, want)
			if err := s.Return(h); err != nil {
				t.Fatal(err)
			}
			if got := resting(h); !bytes.Equal(got, want) {
				t.Fatalf("n=%d move=%v: Return's ciphertext does not decrypt to the entry", n, move)
			}
			v, err := ViewSlice[byte](s, h)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(v, want) {
				t.Fatalf("n=%d move=%v: View gives other bytes than were written", n, move)
			}
			if err := s.ReturnView(h); err != nil {
				t.Fatal(err)
			}
			if got := resting(h); !bytes.Equal(got, want) {
				t.Fatalf("n=%d move=%v: ReturnView's ciphertext does not decrypt to the entry", n, move)
			}
		}
		if err := s.Free(h); err != nil {
			t.Fatal(err)
		}
	}
}
