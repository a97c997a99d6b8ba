package memshuffle

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOps reads an operation sequence from the input and runs it against a
// Shuffler and a plain map, comparing every entry's contents and checking
// the invariants after every step.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 10, 1, 0, 2, 0, 5, 1, 0, 3, 0})
	f.Add([]byte{0, 200, 0, 3, 0, 17, 1, 1, 4, 6, 1, 2, 2, 1, 5, 3, 1})
	f.Add(bytes.Repeat([]byte{0, 33, 1, 0, 7, 2, 0, 4}, 8))
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 512 {
			ops = ops[:512]
		}
		// The first byte picks the cipher, so every mode gets fuzzed.
		mode := AES256CTR
		if len(ops) > 0 {
			mode = Cipher(ops[0] % 3)
			ops = ops[1:]
		}
		s, err := New(WithShards(2), WithArenaSize(4096), WithCipher(mode))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		m := model{}
		var hs []Handle
		rented := map[Handle][]byte{}
		next := func() byte {
			if len(ops) == 0 {
				return 0
			}
			b := ops[0]
			ops = ops[1:]
			return b
		}
		pick := func() (Handle, bool) {
			if len(hs) == 0 {
				return Handle{}, false
			}
			return hs[int(next())%len(hs)], true
		}
		for step := 0; len(ops) > 0; step++ {
			switch next() % 8 {
			case 0: // alloc
				n := 1 + int(next())
				h, err := Alloc[byte](s, n)
				if err != nil {
					t.Fatal(err)
				}
				m[h] = make([]byte, n)
				hs = append(hs, h)
			case 1: // rent, or write and return when rented
				h, ok := pick()
				if !ok {
					break
				}
				if b, ok := rented[h]; ok {
					v := next()
					for i := range b {
						b[i] = v + byte(i)
					}
					m[h] = bytes.Clone(b)
					if err := s.Return(h); err != nil {
						t.Fatal(err)
					}
					delete(rented, h)
					break
				}
				b, err := RentSlice[byte](s, h)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(b, m[h]) {
					t.Fatalf("step %d: contents differ from the model", step)
				}
				rented[h] = b
			case 2: // free
				h, ok := pick()
				if !ok {
					break
				}
				err := s.Free(h)
				if _, isRented := rented[h]; isRented {
					if !errors.Is(err, ErrBusy) {
						t.Fatalf("Free of a rented entry: %v", err)
					}
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				delete(m, h)
				for i := range hs {
					if hs[i] == h {
						hs = append(hs[:i], hs[i+1:]...)
						break
					}
				}
				// A second free and every use of the stale handle fail.
				if err := s.Free(h); !errors.Is(err, ErrInvalidHandle) {
					t.Fatalf("double free: %v", err)
				}
			case 3:
				if err := s.Shuffle(); err != nil {
					t.Fatal(err)
				}
			case 4:
				if err := s.RotateKey(nil, nil); err != nil {
					t.Fatal(err)
				}
			case 5:
				s.SetShuffleOnBorrowReturn(next()%2 == 1)
			case 6: // misuse: return what is not rented
				h, ok := pick()
				if !ok {
					break
				}
				if _, isRented := rented[h]; !isRented {
					if err := s.Return(h); !errors.Is(err, ErrNotRented) {
						t.Fatalf("Return of unrented: %v", err)
					}
				}
			case 7: // typed rent of a wider type
				h, ok := pick()
				if !ok {
					break
				}
				if _, isRented := rented[h]; isRented {
					break
				}
				_, err := Rent[[64]byte](s, h)
				if len(m[h]) < 64 {
					if !errors.Is(err, ErrTypeMismatch) {
						t.Fatalf("Rent of wider type: %v", err)
					}
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Return(h); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.check(); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			// Compare the unrented entries with the model after every step.
			for h, want := range m {
				if _, isRented := rented[h]; isRented {
					continue
				}
				if got := readAll(t, s, h); !bytes.Equal(got, want) {
					t.Fatalf("step %d: entry %v differs from the model", step, h)
				}
			}
		}
	})
}

// TestFuzzCorpus fails when the committed seed corpus is missing, so the
// fuzz target never silently runs on nothing but its f.Add seeds.
func TestFuzzCorpus(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzOps", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Fatalf("seed corpus has %d files, want at least 5", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("go test fuzz v1\n")) {
			t.Fatalf("%s is not a fuzz corpus file", f)
		}
	}
}
