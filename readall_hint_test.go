package memshuffle

import (
	"bytes"
	"fmt"
	mrand "math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// lyingReader tells a length off by lie from what it holds.
type lyingReader struct {
	*bytes.Reader
	lie int
}

func (r lyingReader) Len() int { return r.Reader.Len() + r.lie }

// TestReadAllForetoldSizeMapsOnce: ReadAll of a reader that tells its
// length reads into one entry of that length and finds the end with a
// one-byte probe, so it locks about the input's size once. It made the
// first entry a byte larger and copied the input into an exact one at the
// end, which needed room for it twice: as nobody under ulimit -l 8192, a
// file of 4.5 MB failed with ErrLockFailed under LockStrict, though
// ReadFrom of it fit. A reader that tells too little or too much still
// gives exactly what it holds.
func TestReadAllForetoldSizeMapsOnce(t *testing.T) {
	const n = 1 << 20
	in := make([]byte, n)
	fill(mrand.New(mrand.NewPCG(3, 4)), in)
	for _, lie := range []int{0, -10, -(n - 100), 10, n} {
		t.Run(fmt.Sprintf("lie=%d", lie), func(t *testing.T) {
			s := newTest(t, WithShards(1))
			var locked atomic.Int64
			osmem.SetLockFault(func(k int) error { locked.Add(int64(k)); return nil })
			t.Cleanup(func() { osmem.SetLockFault(nil) })
			h, err := ReadAll(s, lyingReader{bytes.NewReader(in), lie}, 4*n)
			osmem.SetLockFault(nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, s, h); !bytes.Equal(got, in) {
				t.Fatalf("read %d bytes, not the %d of the input", len(got), n)
			}
			if lie == 0 && locked.Load() > n+n/4 {
				t.Fatalf("ReadAll of %d bytes foretold locked %d bytes", n, locked.Load())
			}
			t.Logf("locked %d bytes for %d", locked.Load(), n)
			mustCheck(t, s)
		})
	}
}
