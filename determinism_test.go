package memshuffle

import (
	"bytes"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestDeterministicReplay runs each FuzzOps input (the committed corpus
// and a few random ones) twice, and each TestRandomOps stream twice, and
// requires both runs to answer every call alike, with the same Stats
// counts and every entry in the same shard, arena and offset after every
// step: a failing input then fails again when replayed, under the race
// detector too, whose sync.Pool drops items at random.
func TestDeterministicReplay(t *testing.T) {
	inputs := fuzzCorpus(t)
	r := mrand.New(mrand.NewPCG(1, 2))
	for k := range 4 {
		in := make([]byte, 200+r.IntN(800))
		for i := range in {
			in[i] = byte(r.Uint32())
		}
		inputs[fmt.Sprintf("random%d", k)] = in
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			sameTraces(t, func(t *testing.T) *opModel { return fuzzModel(t, in) })
		})
	}
	for _, shards := range []int{2, 4} {
		t.Run(fmt.Sprintf("random-ops/%d", shards), func(t *testing.T) {
			sameTraces(t, func(t *testing.T) *opModel {
				s := newTest(t, WithShards(shards), WithArenaSize(4096))
				src := &randSource{r: mrand.New(mrand.NewPCG(uint64(shards), 7)), left: shortOr(1500, 500)}
				m := newOpModel(t, s, src)
				m.replay(uint64(shards), 2)
				return m
			})
		})
	}
}

// sameTraces runs the model newModel returns twice, each on a Shuffler of
// its own, and fails at the first step whose outcome differs.
func sameTraces(t *testing.T, newModel func(t *testing.T) *opModel) {
	var traces [2][]string
	for k := range traces {
		t.Run(fmt.Sprint("run", k), func(t *testing.T) {
			m := newModel(t)
			m.tracing = true
			m.run()
			traces[k] = m.trace
		})
	}
	if t.Failed() {
		return
	}
	a, b := traces[0], traces[1]
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			t.Fatalf("the runs differ at trace line %d:\n%s\n%s", i, a[i], b[i])
		}
	}
	if len(a) != len(b) {
		t.Fatalf("the runs traced %d and %d lines", len(a), len(b))
	}
	if len(a) == 0 {
		t.Fatal("nothing traced")
	}
}

// fuzzCorpus returns FuzzOps's committed corpus, by file name.
func fuzzCorpus(t *testing.T) map[string][]byte {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzOps", "*"))
	if err != nil {
		t.Fatal(err)
	}
	inputs := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b, ok := bytes.CutPrefix(b, []byte("go test fuzz v1\n[]byte("))
		if !ok {
			t.Fatalf("%s: not one []byte value", f)
		}
		b, ok = bytes.CutSuffix(bytes.TrimSpace(b), []byte(")"))
		if !ok {
			t.Fatalf("%s: not one []byte value", f)
		}
		s, err := strconv.Unquote(string(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		inputs[filepath.Base(f)] = []byte(s)
	}
	if len(inputs) == 0 {
		t.Fatal("no corpus")
	}
	return inputs
}

// TestReplayWipeOrder: entries that expire together are wiped, and their
// space freed, in the same order every run, so the entries allocated next
// land in the same places. Borrowed neighbours keep the freed extents
// apart, and Shuffle cannot move them.
func TestReplayWipeOrder(t *testing.T) {
	seen := map[string]int{}
	for range 20 {
		s := newTest(t, WithShards(1), WithArenaSize(4096))
		m := newOpModel(t, s, &byteSource{})
		m.replay(1, 0)
		var hs []Handle
		for range 40 {
			h, err := Alloc[byte](s, 16)
			if err != nil {
				t.Fatal(err)
			}
			hs = append(hs, h)
		}
		for i, h := range hs {
			var err error
			if i%3 == 1 {
				err = s.SetExpiry(h, m.clock.time().Add(time.Millisecond))
			} else {
				_, err = RentSlice[byte](s, h)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		m.clock.advance(time.Millisecond)
		if err := s.Shuffle(); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.Expired != 13 {
			t.Fatalf("%d entries expired, want 13", st.Expired)
		}
		where := ""
		for range 8 {
			h, err := Alloc[byte](s, 16)
			if err != nil {
				t.Fatal(err)
			}
			sh := &s.shards[h.shard()]
			sh.mu.Lock()
			sl := sh.Slots.At(h.slot())
			where += fmt.Sprintf(" %d+%d", sl.Arena(), sl.Off)
			sh.mu.Unlock()
		}
		seen[where]++
	}
	if len(seen) != 1 {
		t.Fatalf("the entries allocated after the wipes landed in %d ways: %v", len(seen), seen)
	}
}
