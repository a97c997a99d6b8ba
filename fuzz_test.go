package memshuffle

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOps runs the operation model (model_test.go) on the fuzzer's input
// (see fuzzModel). Every step is followed by the invariant check and a
// comparison with the model.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 0, 10, 2, 0, 3, 0, 4, 0, 5, 0, 6})
	f.Add([]byte{1, 0, 200, 1, 64, 7, 2, 0, 2, 1, 9, 1, 10, 0, 11, 1, 0, 5, 0})
	f.Add(bytes.Repeat([]byte{0, 33, 2, 0, 3, 1, 7, 8, 12, 0, 13, 0, 14, 3}, 8))
	f.Add([]byte{2, 0, 40, 2, 0, 15, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, ops []byte) {
		fuzzModel(t, ops).run()
	})
}

// fuzzModel returns the model FuzzOps runs on ops, on a Shuffler of two
// small-arena shards: the first byte picks the cipher (mod 3) and the
// replay seed (div 3; see opModel.replay), which with the seam makes
// every run of the same input do the same; the rest picks the operations
// and their arguments.
func fuzzModel(t testing.TB, ops []byte) *opModel {
	if len(ops) > 1024 {
		ops = ops[:1024]
	}
	mode, seed := AES256CTR, byte(0)
	if len(ops) > 0 {
		mode, seed = Cipher(ops[0]%3), ops[0]/3
		ops = ops[1:]
	}
	s := newTest(t, WithShards(2), WithArenaSize(4096), WithCipher(mode))
	m := newOpModel(t, s, &byteSource{ops})
	m.replay(uint64(seed), uint32(seed%9))
	return m
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
