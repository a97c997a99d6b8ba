package memshuffle

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/memshuffle/memshuffle/internal/store"
)

// TestReadAllPurgeBetweenShards: ReadAll grows its input into a new entry,
// which may be in another shard than the entry it read into. Purge (and
// Close) wipe and close one shard at a time, so it can reach the old
// entry's shard before the new one's: the bytes copied across are then the
// wiped ones. ReadAll must answer ErrClosed then, not hand back an entry of
// zeros with a nil error, which the caller could read as its secret until
// Purge reached the other shard.
func TestReadAllPurgeBetweenShards(t *testing.T) {
	input := bytes.Repeat([]byte("secret-input-ABCDEFGH"), 5) // 105 bytes: one grow past readStart
	for attempt := range 50 {
		s, err := New(WithShards(2))
		if err != nil {
			t.Fatal(err)
		}
		off := 0
		purged := -1
		r := readerFunc(func(p []byte) (int, error) {
			if off == len(input) {
				return 0, io.EOF
			}
			n := copy(p, input[off:])
			off += n
			if off < readStart || purged >= 0 {
				return n, nil
			}
			// The first entry is full: find its shard, the one with a rent.
			old := -1
			for i := range s.shards {
				if s.shards[i].Counts.Rented() > 0 {
					old = i
				}
			}
			// Send this processor's next allocations to the other shard,
			// where ReadAll then grows the input.
			sendAllocsTo(s, 1-old)
			// A Purge that has reached this shard and not yet the other.
			s.shards[old].purge()
			purged = old
			return n, nil
		})
		h, err := ReadAll(s, r, 1<<10)
		if err == nil {
			var got []byte
			verr := BorrowViewSlice(s, h, func(b []byte) error {
				got = bytes.Clone(b)
				return nil
			})
			if verr == nil && !bytes.Equal(got, input) {
				t.Fatalf("attempt %d: ReadAll returned nil and an entry of other bytes (%d of them, zero: %v) after its first entry's shard was purged", attempt, len(got), allZero(got))
			}
		} else if !errors.Is(err, ErrClosed) {
			t.Fatalf("attempt %d: ReadAll: %v, want ErrClosed or the input", attempt, err)
		}
		if err := s.Purge(); err != nil {
			t.Fatal(err)
		}
		if err := s.check(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReadAllProbePurgedFirst: a reader that tells one byte less than it
// holds has ReadAll probe for that byte in an entry of its own; when a
// Purge reaches the probe's shard, and wipes the byte, before the shard
// of the entry read into, ReadAll must answer ErrClosed, not the input
// with a zero for its last byte, which it returned in every such run.
func TestReadAllProbePurgedFirst(t *testing.T) {
	const told = 200
	input := bytes.Repeat([]byte{0xAB}, told+1)
	setUp := 0
	for _, withEOF := range []bool{true, false} {
		for attempt := range 50 {
			s, err := New(WithShards(2))
			if err != nil {
				t.Fatal(err)
			}
			off, into, probed := 0, -1, false
			r := toldReader{told: told, read: func(p []byte) (int, error) {
				if off == len(input) {
					return 0, io.EOF
				}
				n := copy(p, input[off:])
				off += n
				switch {
				case len(p) == told && into < 0:
					into = rentedShard(s, told)
					sendAllocsTo(s, 1-into) // the probe goes to the other shard
				case len(p) == 1 && !probed:
					probed = true
					if p := rentedShard(s, 1); p >= 0 && p != into {
						setUp++
						s.shards[p].purge() // a Purge that has not reached into yet
						sendAllocsTo(s, into)
					}
					if withEOF && off == len(input) {
						return n, io.EOF
					}
				}
				return n, nil
			}}
			h, err := ReadAll(s, r, 1<<10)
			if err == nil {
				var got []byte
				if BorrowViewSlice(s, h, func(b []byte) error { got = bytes.Clone(b); return nil }) == nil && !bytes.Equal(got, input) {
					t.Fatalf("withEOF %v, attempt %d: ReadAll returned %d bytes ending in %#x after the probe's shard was purged", withEOF, attempt, len(got), got[len(got)-1])
				}
			} else if !errors.Is(err, ErrClosed) {
				t.Fatalf("ReadAll: %v, want ErrClosed or the input", err)
			}
			s.Purge()
			if err := s.check(); err != nil {
				t.Fatal(err)
			}
			s.Close()
		}
	}
	// sync.Pool, which holds the shard hints, drops some under -race.
	if setUp < 5 {
		t.Fatalf("the probe went to the other shard in %d runs of 100", setUp)
	}
	t.Logf("the probe's shard was purged first in %d runs of 100", setUp)
}

// toldReader reads with read and tells told as its length.
type toldReader struct {
	told int
	read func([]byte) (int, error)
}

func (r toldReader) Read(p []byte) (int, error) { return r.read(p) }
func (r toldReader) Len() int                   { return r.told }

// rentedShard returns the shard of an entry of size bytes that is rented,
// or -1.
func rentedShard(s *Shuffler, size uint32) int {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for j := range sh.Slots.Len() {
			if sl := sh.Slots.At(j); sl.State() == store.StateRented && sl.Size == size {
				sh.mu.Unlock()
				return i
			}
		}
		sh.mu.Unlock()
	}
	return -1
}

// sendAllocsTo sends this processor's next allocations to shard i.
func sendAllocsTo(s *Shuffler, i int) {
	hint := s.hints.Get().(*shardHint)
	hint.base, hint.n = uint32(i), 0
	s.hints.Put(hint)
}
