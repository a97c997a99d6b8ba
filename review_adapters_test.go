package memshuffle

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// TestReadFromOddReaders: ReadFrom treats a reader that returns impossible
// counts, or nothing forever, as ReadAll does: a count past len(p) or below
// zero gives ErrInvalidCount, maxEmptyReads empty reads in a row give
// io.ErrNoProgress, and in every case no entry is left.
func TestReadFromOddReaders(t *testing.T) {
	cases := []struct {
		name string
		read func(p []byte) (int, error)
		want error
	}{
		{"count past len(p)", func(p []byte) (int, error) { return len(p) + 3, nil }, ErrInvalidCount},
		{"count past len(p) with EOF", func(p []byte) (int, error) { return len(p) + 1, io.EOF }, ErrInvalidCount},
		{"negative count", func(p []byte) (int, error) { return -1, nil }, ErrInvalidCount},
		{"no progress", func(p []byte) (int, error) { return 0, nil }, io.ErrNoProgress},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newTest(t, WithShards(1))
			reads := 0
			r := readerFunc(func(p []byte) (int, error) {
				// A reader stuck before the fix would loop for ever: end it
				// with an error that is none of the wanted ones.
				if reads++; reads > 10*maxEmptyReads {
					return 0, errors.New("reader called without end")
				}
				return c.read(p)
			})
			h, err := ReadFrom(s, r, 16)
			if !errors.Is(err, c.want) || !h.IsZero() {
				t.Fatalf("ReadFrom: %v, %v; want %v", h, err, c.want)
			}
			if st := s.Stats(); st.Entries != 0 || st.Rented+st.Viewed != 0 {
				t.Fatalf("entry left behind: %+v", st)
			}
		})
	}
}

// TestReadAllTypedNilReader: a typed nil reader whose Len method, like its
// Read, dereferences its receiver makes ReadAll return ErrPanicked, as it
// does for ReadFrom and ReadUntil, instead of panicking in the size guess.
func TestReadAllTypedNilReader(t *testing.T) {
	for name, r := range map[string]io.Reader{
		"*bytes.Reader":   (*bytes.Reader)(nil),
		"*strings.Reader": (*strings.Reader)(nil),
		"*bytes.Buffer":   (*bytes.Buffer)(nil),
	} {
		t.Run(name, func(t *testing.T) {
			s := newTest(t, WithShards(1))
			var h Handle
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						err = fmt.Errorf("panicked: %v", p)
					}
				}()
				h, err = ReadAll(s, r, 64)
			}()
			if !errors.Is(err, ErrPanicked) || !h.IsZero() {
				t.Fatalf("ReadAll: %v, %v; want ErrPanicked", h, err)
			}
			if st := s.Stats(); st.Entries != 0 || st.Rented+st.Viewed != 0 {
				t.Fatalf("entry left behind: %+v", st)
			}
		})
	}
}
