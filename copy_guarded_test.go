package memshuffle

import (
	"bytes"
	"io"
	"sync"
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
	h := mustCopyFrom(t, s, src)
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
		longest := watchLongest(t, "Copy")
		got, err := c.call()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if n := longest(); n < c.want {
			t.Errorf("%s copied its plaintext without aesctr.Copy (longest Copy %d bytes, want %d or more)", c.name, n, c.want)
		}
		if err := s.Free(got); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPlaintextComparedGuarded: Equal and EqualEntries compare with
// aesctr.Equal, in constant time and leaving nothing in a register for a
// signal to save. With == in both, the whole -short suite passed.
func TestPlaintextComparedGuarded(t *testing.T) {
	s := newTest(t)
	secret := bytes.Repeat([]byte{0x3c}, 48)
	a, b := mustCopyFrom(t, s, secret), mustCopyFrom(t, s, secret)
	for _, c := range []struct {
		name string
		call func() (bool, error)
	}{
		{"Equal", func() (bool, error) { return Equal(s, a, secret) }},
		{"EqualEntries", func() (bool, error) { return EqualEntries(s, a, b) }},
	} {
		longest := watchLongest(t, "Equal")
		eq, err := c.call()
		if err != nil || !eq {
			t.Fatalf("%s = %v, %v; want true", c.name, eq, err)
		}
		if n := longest(); n != len(secret) {
			t.Errorf("%s compared without aesctr.Equal (longest Equal %d bytes, want %d)", c.name, n, len(secret))
		}
	}
}

// mustCopyFrom makes an entry of a copy of b, which CopyFrom wipes, and
// fails t if it cannot.
func mustCopyFrom(t *testing.T, s *Shuffler, b []byte) Handle {
	t.Helper()
	h, err := CopyFrom(s, bytes.Clone(b))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// watchLongest watches aesctr's calls named fn until the test or subtest
// ends, or the function it returns is called, which reports the longest
// of them.
func watchLongest(t *testing.T, fn string) func() int {
	var mu sync.Mutex
	longest := 0
	stop := aesctr.WatchCallsForTest(func(name string, n int) {
		if name == fn {
			mu.Lock()
			longest = max(longest, n)
			mu.Unlock()
		}
	})
	t.Cleanup(stop)
	return func() int {
		stop()
		mu.Lock()
		defer mu.Unlock()
		return longest
	}
}
