package memshuffle

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// plainReader hides every method of r but Read, so ReadUntil cannot use
// ReadByte.
type plainReader struct{ r io.Reader }

func (p plainReader) Read(b []byte) (int, error) { return p.r.Read(b) }

// dataThenPanicReader yields n bytes of data, then panics.
type dataThenPanicReader struct {
	data []byte
}

func (p *dataThenPanicReader) Read(b []byte) (int, error) {
	if len(p.data) == 0 {
		panic("reader broke")
	}
	n := copy(b, p.data)
	p.data = p.data[n:]
	return n, nil
}

// lenReader reports n as its length, whatever is left in r.
type lenReader struct {
	r io.Reader
	n int
}

func (l lenReader) Read(b []byte) (int, error) { return l.r.Read(b) }
func (l lenReader) Len() int                   { return l.n }

// countReader returns a count no correct reader returns.
type countReader struct{ n int }

func (c countReader) Read(b []byte) (int, error) { return c.n, nil }

// emptyReader never makes progress.
type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// mustHold fails unless h holds exactly want.
func mustHold(t testing.TB, s *Shuffler, h Handle, want []byte) {
	t.Helper()
	if n, err := s.Size(h); err != nil || n != len(want) {
		t.Fatalf("Size = %d, %v; want %d", n, err, len(want))
	}
	err := BorrowViewSlice(s, h, func(b []byte) error {
		if !bytes.Equal(b, want) {
			t.Fatalf("entry holds %q..., want %q...", b[:min(len(b), 16)], want[:min(len(want), 16)])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// mustBeEmpty fails unless s holds no entry: a failed read left nothing
// behind, intermediate entries included.
func mustBeEmpty(t testing.TB, s *Shuffler) {
	t.Helper()
	mustCheck(t, s)
	if st := s.Stats(); st.Entries != 0 || st.Rented+st.Viewed != 0 {
		t.Fatalf("%d entries, %d borrowed left behind", st.Entries, st.Rented+st.Viewed)
	}
}

func TestReadAll(t *testing.T) {
	t.Parallel()
	big := randomBytes(t, 5000) // grows 512, 1024, 2048, 4096, 8192, then shrinks
	tests := []struct {
		name  string
		r     func() io.Reader
		limit int
		want  []byte
		err   []error // every one must match; nil for success
	}{
		{"one byte", func() io.Reader { return strings.NewReader("k") }, 10, []byte("k"), nil},
		{"grows and shrinks", func() io.Reader { return plainReader{bytes.NewReader(big)} }, 1 << 20, big, nil},
		{"Len foretells the size", func() io.Reader { return bytes.NewReader(big) }, 1 << 20, big, nil},
		{"Len says too little", func() io.Reader { return lenReader{bytes.NewReader(big), 100} }, 1 << 20, big, nil},
		{"Len says too much", func() io.Reader { return lenReader{bytes.NewReader(big), 100000} }, 1 << 20, big, nil},
		{"Len says over the limit", func() io.Reader { return lenReader{bytes.NewReader(big[:600]), 1 << 30} }, 700, big[:600], nil},
		{"Len says 0", func() io.Reader { return lenReader{bytes.NewReader(big), 0} }, 1 << 20, big, nil},
		{"one byte per read", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(big)) }, 1 << 20, big, nil},
		{"half reads", func() io.Reader { return iotest.HalfReader(bytes.NewReader(big)) }, 1 << 20, big, nil},
		{"data with EOF", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(big)) }, 1 << 20, big, nil},
		{"exactly the first entry", func() io.Reader { return bytes.NewReader(big[:readStart]) }, 1 << 20, big[:readStart], nil},
		{"exactly the limit", func() io.Reader { return bytes.NewReader(big[:700]) }, 700, big[:700], nil},
		{"exactly a small limit", func() io.Reader { return bytes.NewReader(big[:7]) }, 7, big[:7], nil},
		{"one over the limit", func() io.Reader { return bytes.NewReader(big[:701]) }, 700, nil, []error{ErrTooLarge}},
		{"far over a small limit", func() io.Reader { return bytes.NewReader(big) }, 3, nil, []error{ErrTooLarge}},
		{"empty", func() io.Reader { return strings.NewReader("") }, 10, nil, []error{ErrInvalidSize, io.EOF}},
		{"reader error", func() io.Reader {
			return io.MultiReader(bytes.NewReader(big[:100]), iotest.ErrReader(io.ErrClosedPipe))
		}, 1 << 20, nil, []error{io.ErrClosedPipe}},
		{"timeout", func() io.Reader { return iotest.TimeoutReader(bytes.NewReader(big)) }, 1 << 20, nil, []error{iotest.ErrTimeout}},
		{"panics after data", func() io.Reader { return &dataThenPanicReader{data: bytes.Clone(big[:3000])} }, 1 << 20, nil, nil},
		{"error in the probe", func() io.Reader { return io.MultiReader(bytes.NewReader(big[:8]), iotest.ErrReader(io.ErrClosedPipe)) }, 8, nil, []error{io.ErrClosedPipe}},
		{"panics in the probe", func() io.Reader { return &dataThenPanicReader{data: bytes.Clone(big[:8])} }, 8, nil, nil},
		{"count too large", func() io.Reader { return countReader{n: 1 << 30} }, 10, nil, nil},
		{"negative count", func() io.Reader { return countReader{n: -1} }, 10, nil, nil},
		{"no progress", func() io.Reader { return emptyReader{} }, 10, nil, []error{io.ErrNoProgress}},
		{"nil reader", func() io.Reader { return nil }, 10, nil, []error{ErrNilArgument}},
		{"limit 0", func() io.Reader { return strings.NewReader("k") }, 0, nil, []error{ErrInvalidSize}},
		{"limit -1", func() io.Reader { return strings.NewReader("k") }, -1, nil, []error{ErrInvalidSize}},
		{"limit over MaxEntrySize", func() io.Reader { return strings.NewReader("k") }, overMax, nil, []error{ErrInvalidSize}},
	}
	for _, cipher := range []Cipher{AES256CTR, AES256GCM} {
		for _, tt := range tests {
			t.Run(cipher.String()+"/"+tt.name, func(t *testing.T) {
				s := newTest(t, WithShards(1), WithCipher(cipher))
				h, err := ReadAll(s, tt.r(), tt.limit)
				if tt.want == nil {
					if err == nil {
						t.Fatalf("ReadAll succeeded, want an error")
					}
					for _, e := range tt.err {
						if !errors.Is(err, e) {
							t.Fatalf("err = %v, want %v", err, e)
						}
					}
					if !h.IsZero() {
						t.Fatalf("failed ReadAll returned %v", h)
					}
					mustBeEmpty(t, s)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				mustHold(t, s, h, tt.want)
				if st := s.Stats(); st.Entries != 1 || st.Rented+st.Viewed != 0 {
					t.Fatalf("%d entries, %d borrowed; want only the result", st.Entries, st.Rented+st.Viewed)
				}
				mustCheck(t, s)
			})
		}
	}
}

// A regular file tells ReadAll its size; what is left after the offset is
// what counts, and a file over the limit fails.
func TestReadAllFile(t *testing.T) {
	t.Parallel()
	big := randomBytes(t, 5000)
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, big, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		offset int64
		limit  int
		want   []byte
		err    error
	}{
		{"whole", 0, 1 << 20, big, nil},
		{"from an offset", 1000, 1 << 20, big[1000:], nil},
		{"at the end", 5000, 1 << 20, nil, io.EOF},
		{"exactly the limit", 1000, 4000, big[1000:], nil},
		{"over the limit", 0, 4999, nil, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTest(t, WithShards(1))
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Seek(tt.offset, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			h, err := ReadAll(s, f, tt.limit)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				mustBeEmpty(t, s)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			mustHold(t, s, h, tt.want)
			if st := s.Stats(); st.Entries != 1 {
				t.Fatalf("%d entries, want only the result", st.Entries)
			}
		})
	}
}

func TestReadAllPanicIsError(t *testing.T) {
	t.Parallel()
	s := newTest(t)
	_, err := ReadAll(s, &dataThenPanicReader{data: []byte("abc")}, 100)
	if err == nil || !strings.Contains(err.Error(), "reader broke") {
		t.Fatalf("err = %v, want the panic's value", err)
	}
	errPanic := errors.New("typed")
	_, err = ReadAll(s, iotest.ErrReader(nil), 100) // nil error, no data: no progress
	if !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("err = %v", err)
	}
	_, err = ReadUntil(s, readerFunc(func([]byte) (int, error) { panic(errPanic) }), '\n', 100)
	if !errors.Is(err, errPanic) {
		t.Fatalf("err = %v, want the panicked error wrapped", err)
	}
	mustBeEmpty(t, s)
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

func TestReadUntil(t *testing.T) {
	t.Parallel()
	long := bytes.Repeat([]byte("0123456789abcdef"), 200) // 3200 bytes
	tests := []struct {
		name  string
		in    string
		limit int
		want  string
		rest  string // left unread in r
		err   []error
	}{
		{"line", "hunter2\nnext line", 100, "hunter2", "next line", nil},
		{"delimiter last", "hunter2\n", 100, "hunter2", "", nil},
		{"no delimiter", "hunter2", 100, "hunter2", "", nil},
		{"grows", string(long) + "\nrest", 1 << 20, string(long), "rest", nil},
		{"exactly the limit then delimiter", "abcd\nrest", 4, "abcd", "rest", nil},
		{"exactly the limit then EOF", "abcd", 4, "abcd", "", nil},
		{"over the limit", "abcde\n", 4, "", "\n", []error{ErrTooLarge}},
		{"far over the limit", string(long) + "\n", 1000, "", string(long[1001:]) + "\n", []error{ErrTooLarge}},
		{"delimiter first", "\nrest", 10, "", "rest", []error{ErrInvalidSize}},
		{"empty", "", 10, "", "", []error{ErrInvalidSize, io.EOF}},
		{"limit 0", "abc\n", 0, "", "abc\n", []error{ErrInvalidSize}},
	}
	readers := map[string]func(io.Reader) io.Reader{
		"ByteReader": func(r io.Reader) io.Reader { return r },
		"Read only":  func(r io.Reader) io.Reader { return plainReader{r} },
	}
	for rname, wrap := range readers {
		for _, tt := range tests {
			t.Run(rname+"/"+tt.name, func(t *testing.T) {
				s := newTest(t, WithShards(1))
				src := strings.NewReader(tt.in)
				h, err := ReadUntil(s, wrap(src), '\n', tt.limit)
				rest, _ := io.ReadAll(src)
				if string(rest) != tt.rest {
					t.Errorf("left %q unread, want %q", rest, tt.rest)
				}
				if tt.err != nil {
					for _, e := range tt.err {
						if !errors.Is(err, e) {
							t.Fatalf("err = %v, want %v", err, e)
						}
					}
					if tt.name == "delimiter first" && errors.Is(err, io.EOF) {
						t.Fatalf("err = %v matches io.EOF, but input did not end", err)
					}
					mustBeEmpty(t, s)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				mustHold(t, s, h, []byte(tt.want))
				mustCheck(t, s)
			})
		}
	}
}

// A reader error after some bytes, and a panic, leave nothing, with both
// kinds of reader.
func TestReadUntilFailures(t *testing.T) {
	t.Parallel()
	s := newTest(t)
	r := io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(io.ErrClosedPipe))
	if _, err := ReadUntil(s, r, '\n', 100); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("err = %v", err)
	}
	if _, err := ReadUntil(s, &dataThenPanicReader{data: []byte("abc")}, '\n', 100); err == nil {
		t.Fatal("a panicking reader gave no error")
	}
	if _, err := ReadUntil(s, nil, '\n', 100); !errors.Is(err, ErrNilArgument) {
		t.Fatalf("err = %v", err)
	}
	mustBeEmpty(t, s)
	s.Close()
	if _, err := ReadUntil(s, strings.NewReader("a"), '\n', 100); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed: err = %v", err)
	}
	if _, err := ReadAll(s, strings.NewReader("a"), 100); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed: err = %v", err)
	}
}

// overMax is one more than MaxEntrySize where an int holds that, and
// negative (as invalid) where it does not.
var overMax = func() int { n := MaxEntrySize; return n + 1 }()

// TestGrownSize: an entry ReadAll or ReadUntil fills grows to twice its
// size, at most the limit, without overflowing where twice the size does
// not fit an int (on 32-bit platforms, past 1 GiB of the 2 GiB that
// MaxEntrySize allows).
func TestGrownSize(t *testing.T) {
	for _, c := range []struct{ n, limit, want int }{
		{1, 100, 2},
		{40, 100, 80},
		{60, 100, 100},
		{99, 100, 100},
		{math.MaxInt/2 + 1, math.MaxInt, math.MaxInt},
		{math.MaxInt - 1, math.MaxInt, math.MaxInt},
		{math.MaxInt / 4, math.MaxInt, math.MaxInt/4 + math.MaxInt/4},
	} {
		if got := grownSize(c.n, c.limit); got != c.want {
			t.Errorf("grownSize(%d, %d) = %d, want %d", c.n, c.limit, got, c.want)
		}
	}
}
