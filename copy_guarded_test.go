package memshuffle

import (
	"bytes"
	"io"
	"testing"

	"github.com/memshuffle/memshuffle/internal/aesctr"
)

// TestPlaintextCopiedGuarded: CopyFrom, Clone and ReadAll's growth copy the
// plaintext with aesctr.Copy, which leaves none of it in a register for a
// signal to save, not with the built-in copy. The built-in copy in
// CopyFrom or Clone passed the whole -short suite: the storms that catch
// an unguarded copy run aesctr itself (TestShortCallsGuarded), and a dump
// of a busy process catches one only by chance.
func TestPlaintextCopiedGuarded(t *testing.T) {
	s := newTest(t)
	src := bytes.Repeat([]byte{0x5a}, 100)
	h, err := CopyFrom(s, bytes.Clone(src))
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte{0xa5}, 20000)
	for _, c := range []struct {
		name string
		want int // a Copy of this many bytes at least
		call func() (Handle, error)
	}{
		{"CopyFrom", len(src), func() (Handle, error) { return CopyFrom(s, bytes.Clone(src)) }},
		{"Clone", len(src), func() (Handle, error) { return Clone(s, h) }},
		// A reader that does not tell its size: the entry grows.
		{"ReadAll", 1, func() (Handle, error) {
			return ReadAll(s, struct{ io.Reader }{bytes.NewReader(big)}, len(big))
		}},
	} {
		var longest int
		stop := aesctr.WatchCopiesForTest(func(n int) { longest = max(longest, n) })
		got, err := c.call()
		stop()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if longest < c.want {
			t.Errorf("%s copied its plaintext without aesctr.Copy (longest Copy %d bytes, want %d or more)", c.name, longest, c.want)
		}
		if err := s.Free(got); err != nil {
			t.Fatal(err)
		}
	}
}
