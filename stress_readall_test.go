package memshuffle

import (
	"bytes"
	"errors"
	"io"
	"testing"
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
			hint := s.hints.Get().(*shardHint)
			hint.base, hint.n = uint32(1-old), 0
			s.hints.Put(hint)
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
