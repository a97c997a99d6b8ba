package memshuffle

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
	"time"
)

// panicReader writes part of a secret into the entry, then panics.
type panicReader struct{ v any }

func (r *panicReader) Read(p []byte) (int, error) {
	copy(p, "partial plaintext")
	panic(r.v)
}

// nilDerefReader panics through its nil receiver, as typed-nil readers do.
type nilDerefReader struct{ r io.Reader }

func (r *nilDerefReader) Read(p []byte) (int, error) { return r.r.Read(p) }

// TestReadFromPanickingReader: a reader that panics, with any value, or a
// typed nil reader whose Read dereferences its receiver, makes ReadFrom
// return an error wrapping ErrPanicked (and the panic value, when it is an
// error), with the entry wiped and freed.
func TestReadFromPanickingReader(t *testing.T) {
	errBoom := errors.New("boom")
	var typedNil *nilDerefReader
	var typedNilBytes *bytes.Reader
	cases := []struct {
		name string
		r    io.Reader
		also error
	}{
		{"panic string", &panicReader{"boom"}, nil},
		{"panic error", &panicReader{errBoom}, errBoom},
		{"typed nil", typedNil, nil},
		{"typed nil bytes.Reader", typedNilBytes, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newTest(t, WithShards(1))
			h, err := ReadFrom(s, c.r, 64)
			if !errors.Is(err, ErrPanicked) || (c.also != nil && !errors.Is(err, c.also)) || !h.IsZero() {
				t.Fatalf("got %v, %v; want an error wrapping ErrPanicked", h, err)
			}
			if st := s.Stats(); st.Entries != 0 || st.Rented+st.Viewed != 0 {
				t.Fatalf("entry left behind: %+v", st)
			}
			mustCheck(t, s) // every arena byte outside live entries is zero
		})
	}
}

// TestCopyFromKeepsSourceOnFailure: CopyFrom wipes src when, and only
// when, the entry holds it. Failures before it is stored (a closed
// Shuffler, a TTL so short the entry expires before it is sealed) leave src
// intact, so the secret is not lost.
func TestCopyFromKeepsSourceOnFailure(t *testing.T) {
	const secret = "a secret that must not be lost"
	closed, err := New()
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	short := newTest(t, WithDefaultTTL(time.Nanosecond))
	for _, c := range []struct {
		name string
		s    *Shuffler
		want error
	}{
		{"closed", closed, ErrClosed},
		{"expires before stored", short, ErrExpired},
	} {
		src := []byte(secret)
		_, err := CopyFrom(c.s, src)
		if err == nil && c.want == ErrExpired && runtime.GOOS != "linux" {
			// A coarse clock (Windows ticks in milliseconds) may not move
			// between the allocation and the store: then the entry holds
			// the secret, and src must be wiped.
			if !allZero(src) {
				t.Fatalf("%s: CopyFrom stored the secret and left its source", c.name)
			}
			t.Logf("%s: the clock did not move; case not exercised", c.name)
			continue
		}
		if !errors.Is(err, c.want) {
			t.Fatalf("%s: got %v, want %v", c.name, err, c.want)
		}
		if string(src) != secret {
			t.Fatalf("%s: CopyFrom failed and changed its source to %q", c.name, src)
		}
	}
	s := newTest(t)
	src := []byte(secret)
	h, err := CopyFrom(s, src)
	if err != nil {
		t.Fatal(err)
	}
	if !allZero(src) {
		t.Fatal("CopyFrom stored the secret and left its source")
	}
	if got := readAll(t, s, h); string(got) != secret {
		t.Fatalf("got %q", got)
	}
}
