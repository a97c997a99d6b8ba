package memshuffle

import (
	"crypto/rand"
	"io"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/memscan"
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

// TestReadPrivateKeyGoexitLeavesNothing: a reader that hands ReadPrivateKey
// a key and then ends its goroutine with runtime.Goexit leaves no copy of
// the key in the buffer ReadPrivateKey read it into, as one that panics or
// fails leaves none. Goexit neither returns nor panics, so a wipe that
// runs only on an error never ran, and the key stayed on the Go heap. The
// collector is off, so that buffer, once garbage, is not reused before the
// scan, and the scan is first shown to find a planted copy.
func TestReadPrivateKeyGoexitLeavesNothing(t *testing.T) {
	skipScanUnderRace(t)
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	s := newTest(t)
	der := append([]byte{0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20}, make([]byte, 32)...)
	seed := der[16:]
	rand.Read(seed)
	p, err := memscan.NewPattern(seed)
	if err != nil {
		t.Fatal(err)
	}
	planted := plant(seed)
	if n := len(scanSelf(t, p)); n != 2 {
		t.Fatalf("control: %d copies of the seed found, want 2 (the test's and the planted one)", n)
	}
	Wipe(planted)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ReadPrivateKey(s, goexitAfterReader{der})
		t.Error("ReadPrivateKey returned: the reader did not end its goroutine")
	}()
	<-done
	Wipe(der)
	if n := len(scanSelf(t, p)); n != 0 {
		t.Errorf("%d copies of the seed left after the reader's Goexit, want 0", n)
	}
}

// goexitAfterReader copies src into the buffer it is given, as a reader
// that has read a key does, and then ends its goroutine with
// runtime.Goexit, as t.FailNow does in a test's reader.
type goexitAfterReader struct{ src []byte }

func (r goexitAfterReader) Read(p []byte) (int, error) {
	aesctr.Copy(p, r.src) // not memmove, which leaves the seed in X2-X3 (see plant)
	runtime.Goexit()
	return 0, nil
}
