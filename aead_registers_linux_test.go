package memshuffle

import (
	"testing"

	"github.com/memshuffle/memshuffle/internal/aesctr"
)

// TestGCMKeyNotInSavedRegisters rents and returns an AES-256-GCM entry while
// another goroutine loops on runtime.GC, whose stops preempt this one
// asynchronously in the Go code between rents, then closes the Shuffler and
// scans the process for the key's schedule. crypto/aes's GCM assembly
// returns with round keys in X1-X7, and an asynchronous preemption saves
// the vector registers in the runtime's own memory (a P's scratch area),
// which Close cannot wipe: before internal/seal cleared the registers after
// each call, 19 of 20 rounds of this loop left 7 to 21 blocks of the
// schedule after Close; since, none of 100.
func TestGCMKeyNotInSavedRegisters(t *testing.T) {
	if raceBuild {
		t.Skip("scans the whole process five times, which takes minutes under -race; the run without it checks the same")
	}
	if !aesctr.Supported() {
		t.Skip("no AES-NI: crypto/aes keeps the key schedule on the heap")
	}
	skipGenericGCMSchedule(t)
	for round := range 5 {
		s := newTest(t, WithCipher(AES256GCM), WithShards(1))
		key, salt, ps := keyPatterns(t)
		if err := s.RotateKey(key, salt); err != nil {
			t.Fatal(err)
		}
		h, err := Random(s, 300)
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 && hitsOf(t, ps) == 0 {
			t.Fatal("the key in use is not found: the scan finds nothing")
		}
		stop := startCollecting(0)
		for range 50 {
			if _, err := RentSlice[byte](s, h); err != nil {
				t.Fatal(err)
			}
			if err := s.Return(h); err != nil {
				t.Fatal(err)
			}
			// Long enough in Go code for a stop to preempt it.
			spinSink += spinFor(2_000_000)
		}
		stop()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if n := hitsOf(t, ps); n != 0 {
			t.Errorf("round %d: %d blocks of the key's schedule left after Close", round, n)
		}
	}
}

var spinSink uint64

// spinFor runs n steps of a linear congruential generator: Go code with no
// call and no vector register, which only an asynchronous preemption stops.
//
//go:noinline
func spinFor(n int) uint64 {
	x := uint64(1)
	for range n {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}
