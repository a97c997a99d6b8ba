package memshuffle

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/memscan"
)

// leakReader hands over a secret, as much of it as each Read asks for,
// wiping its own copy of what it hands over, so that afterwards the only
// copy is the one the library took; then it misbehaves as then says.
type leakReader struct {
	src    []byte // the secret, zeros where handed over
	handed int    // bytes of src handed over
	then   string // what the reader does after the secret
}

var errReaderFailed = errors.New("reader failed")

func (r *leakReader) Read(p []byte) (int, error) {
	if r.handed < len(r.src) {
		rest := r.src[r.handed:]
		n := min(len(p), len(rest))
		aesctr.Copy(p[:n], rest[:n]) // leaves no plaintext in registers
		Wipe(rest[:n])
		r.handed += n
		if r.handed == len(r.src) && r.then == "data and error" {
			return n, errReaderFailed
		}
		return n, nil
	}
	switch r.then {
	case "error", "data and error":
		return 0, errReaderFailed
	case "panic":
		panic("reader panicked")
	case "count":
		return len(p) + 1, nil
	}
	return 0, nil // "stall"
}

// TestMisbehavingReaderLeavesNothing: whatever way a reader fails after it
// has handed over a secret, ReadFrom, ReadAll, ReadUntil and ReadPrivateKey
// return the failure's sentinel and leave no copy of what was read in the
// process's memory, in the entry being filled or anywhere else. It checks
// the outcome, not one wipe: with one of them taken out, the re-encryption
// and the Free that follow still leave none. A control: the reader's own
// copy is found before the call.
func TestMisbehavingReaderLeavesNothing(t *testing.T) {
	skipScanUnderRace(t)
	calls := []struct {
		name string
		f    func(*Shuffler, io.Reader) (Handle, error)
	}{
		{"ReadFrom", func(s *Shuffler, r io.Reader) (Handle, error) { return ReadFrom(s, r, 4096) }},
		{"ReadAll", func(s *Shuffler, r io.Reader) (Handle, error) { return ReadAll(s, r, 1<<20) }},
		{"ReadUntil", func(s *Shuffler, r io.Reader) (Handle, error) { return ReadUntil(s, r, '\n', 1<<20) }},
		{"ReadPrivateKey", ReadPrivateKey},
	}
	modes := []struct {
		then string
		want error
	}{
		{"error", errReaderFailed},
		{"data and error", errReaderFailed},
		{"panic", ErrPanicked},
		{"count", ErrInvalidCount},
		{"stall", io.ErrNoProgress},
	}
	for ci, c := range calls {
		for mi, m := range modes {
			// Each case scans the process twice; -short runs two modes
			// a call, a different pair for each.
			if testing.Short() && mi != ci%len(modes) && mi != (ci+2)%len(modes) {
				continue
			}
			t.Run(c.name+"/"+m.then, func(t *testing.T) {
				s := newTest(t)
				// Letters, with no newline for ReadUntil to stop at. The
				// secret is built on the heap, where the control finds it.
				src := heapBytes(64)
				rand.Read(src)
				for i := range src {
					src[i] = 'A' + src[i]%26
				}
				var ps []*memscan.Pattern
				for i := 0; i < len(src); i += 16 {
					p, err := memscan.NewPattern(src[i : i+16])
					if err != nil {
						t.Fatal(err)
					}
					ps = append(ps, p)
				}
				for i, hits := range scanSelfAll(t, ps) {
					if len(hits) != 1 {
						t.Fatalf("control: %d copies of the secret's block %d, want 1", len(hits), i)
					}
				}
				r := &leakReader{src: src, then: m.then}
				_, err := c.f(s, r)
				if !errors.Is(err, m.want) {
					t.Fatalf("%s with a reader that ends in %q: %v, want %v", c.name, m.then, err, m.want)
				}
				if r.handed != len(src) || !bytes.Equal(src, make([]byte, len(src))) {
					t.Fatalf("the reader handed over %d of the secret's %d bytes before it failed", r.handed, len(src))
				}
				for i, hits := range scanSelfAll(t, ps) {
					if hits := unguarded(t, hits); len(hits) != 0 {
						t.Errorf("block %d of what was read left in memory after the error: %s", i, hitList(hits))
					}
				}
				if st := s.Stats(); st.Entries != 0 {
					t.Errorf("%d entries after the failed read, want 0", st.Entries)
				}
			})
		}
	}
}

// scanSelfAll searches every readable mapping of this process for each of
// ps, in one pass.
func scanSelfAll(t *testing.T, ps []*memscan.Pattern) [][]memscan.Hit {
	t.Helper()
	hits, err := memscan.ScanProcessAll(os.Getpid(), ps)
	if err != nil {
		t.Fatal(err)
	}
	return hits
}
