package memshuffle

import (
	"io"
	"runtime"
	"testing"
)

// goexitReader writes a secret into the buffer it is given and then ends
// its goroutine with runtime.Goexit, as t.FailNow does in a test's reader.
type goexitReader struct{}

func (goexitReader) Read(p []byte) (int, error) {
	copy(p, "a secret the reader wrote")
	runtime.Goexit()
	return 0, nil
}

// TestFillGoexit: a reader that ends its goroutine with runtime.Goexit
// leaves no entry behind, as a reader that panics or fails leaves none:
// neither a rented one holding what it wrote in the clear (ReadAll,
// ReadUntil), nor a live one whose Handle nobody holds (ReadFrom).
func TestFillGoexit(t *testing.T) {
	for _, c := range []struct {
		name string
		fill func(*Shuffler, io.Reader) (Handle, error)
	}{
		{"ReadFrom", func(s *Shuffler, r io.Reader) (Handle, error) { return ReadFrom(s, r, 64) }},
		{"ReadAll", func(s *Shuffler, r io.Reader) (Handle, error) { return ReadAll(s, r, 1<<20) }},
		{"ReadUntil", func(s *Shuffler, r io.Reader) (Handle, error) { return ReadUntil(s, r, '\n', 1<<20) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newTest(t)
			done := make(chan struct{})
			go func() {
				defer close(done)
				c.fill(s, goexitReader{})
				t.Error("the fill returned: the reader did not end its goroutine")
			}()
			<-done
			if st := s.Stats(); st.Entries != 0 || st.Rented != 0 {
				t.Errorf("after the reader's Goexit: %d entries, %d rented; want none", st.Entries, st.Rented)
			}
		})
	}
}
