package memshuffle

import (
	"crypto/rand"
	"os"
	"testing"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/memscan"
	"github.com/memshuffle/memshuffle/internal/osmem"
)

// keyPatterns gives a key and salt, in memory outside the Go heap, and
// patterns for the sixteen-byte blocks of its AES-256 expansion (the first
// two of which are the key itself, which is all ChaCha20-Poly1305 keeps).
// The expansion is wiped; the key and salt are the caller's to pass to
// RotateKey, which wipes them.
func keyPatterns(t *testing.T) (*[32]byte, *[8]byte, []*memscan.Pattern) {
	t.Helper()
	key, salt, spare := offHeapKey(t)
	rk := (*[aesctr.RoundKeysSize]byte)(spare[:aesctr.RoundKeysSize])
	if err := aesctr.Expand(rk, key); err != nil {
		t.Skip(err)
	}
	ps := blockPatterns(t, rk[:])
	osmem.Wipe(rk[:])
	return key, salt, ps
}

// offHeapKey gives a random key and salt in a mapping of their own,
// outside the Go heap, unmapped when the test ends, and the rest of that
// mapping, past them, for what the caller derives from them.
func offHeapKey(t *testing.T) (key *[32]byte, salt *[8]byte, spare []byte) {
	t.Helper()
	reg, err := osmem.Map(4096, osmem.Flags{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { osmem.Unmap(reg) })
	key, salt = (*[32]byte)(reg.Data[:32]), (*[8]byte)(reg.Data[32:40])
	rand.Read(key[:])
	rand.Read(salt[:])
	return key, salt, reg.Data[64:]
}

// blockPatterns gives a pattern for each whole sixteen-byte block of b.
func blockPatterns(t *testing.T, b []byte) []*memscan.Pattern {
	t.Helper()
	var ps []*memscan.Pattern
	for i := 0; i+16 <= len(b); i += 16 {
		p, err := memscan.NewPattern(b[i : i+16])
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

// hitsOf counts every occurrence of ps in the process's memory.
func hitsOf(t *testing.T, ps []*memscan.Pattern) int {
	t.Helper()
	hits, err := memscan.ScanProcessAll(os.Getpid(), ps)
	if err != nil {
		t.Skip(err)
	}
	n := 0
	for _, h := range hits {
		n += len(h)
	}
	return n
}

// TestOldKeyGoneAfterRotation: once RotateKey has moved every entry to a
// new key, nothing of the old one is left in the process: not the round
// keys of AES-256-CTR (in the Shuffler's region), nor the key schedule
// crypto/aes builds for AES-256-GCM on the Go heap, twice (the block, and
// GCM's copy of it); nor, after Close or Purge, anything of the key in
// use. The control: found while in use.
//
// With ChaCha20-Poly1305 the patterns' first two blocks are the key
// itself, which is all it keeps: x/crypto's amd64 assembly leaves the key
// in its own stack frame for inputs over 320 bytes (the entries here go
// up to 960), which internal/seal scrubs after each call; without the
// scrub, 1 to 4 blocks were left after the rotation and after Close.
func TestOldKeyGoneAfterRotation(t *testing.T) {
	if raceBuild {
		t.Skip("scans the whole process seven times, which takes minutes under -race; the run without it checks the same")
	}
	if !aesctr.Supported() {
		t.Skip("no AES-NI: crypto/aes keeps the CTR key schedule on the heap")
	}
	for _, c := range []Cipher{AES256CTR, AES256GCM, ChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			if c == AES256GCM {
				skipGenericGCMSchedule(t)
			}
			s := newTest(t, WithCipher(c), WithShards(2))
			for i := range 20 {
				if _, err := Random(s, 10+i*50); err != nil {
					t.Fatal(err)
				}
			}
			key, salt, ps := keyPatterns(t)
			if err := s.RotateKey(key, salt); err != nil {
				t.Fatal(err)
			}
			if n := hitsOf(t, ps); n == 0 {
				t.Fatal("the key in use is not found: the scan finds nothing")
			}
			if err := s.RotateKey(nil, nil); err != nil {
				t.Fatal(err)
			}
			if n := hitsOf(t, ps); n != 0 {
				t.Errorf("%d blocks of the old key's schedule left after the rotation", n)
			}
			key, salt, ps = keyPatterns(t)
			if err := s.RotateKey(key, salt); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if n := hitsOf(t, ps); n != 0 {
				t.Errorf("%d blocks of the key's schedule left after Close", n)
			}
			s = newTest(t, WithCipher(c), WithShards(2))
			key, salt, ps = keyPatterns(t)
			if err := s.RotateKey(key, salt); err != nil {
				t.Fatal(err)
			}
			if err := s.Purge(); err != nil {
				t.Fatal(err)
			}
			if n := hitsOf(t, ps); n != 0 {
				t.Errorf("%d blocks of the key's schedule left after Purge", n)
			}
		})
	}
}
