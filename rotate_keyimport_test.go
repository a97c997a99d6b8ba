package memshuffle

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"testing"
)

// scratchReader returns src a few bytes per Read and, as io.Reader allows
// ("it may use all of p as scratch space during the call"), fills the rest
// of each buffer it is given with the whole of src, as a reader that
// decrypts a block ahead would. It keeps every buffer it was given.
type scratchReader struct {
	src, left []byte
	bufs      [][]byte
}

func (r *scratchReader) Read(p []byte) (int, error) {
	r.bufs = append(r.bufs, p)
	if len(r.left) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.left[:min(len(r.left), 10)])
	copy(p[n:], r.src)
	r.left = r.left[n:]
	return n, nil
}

// TestReadPrivateKeyWipesReaderScratch: the buffer ReadPrivateKey reads
// into is its own, and is wiped whole before it returns, not only up to
// the length read: a reader may have used the rest of it as scratch, and
// left key material there.
func TestReadPrivateKeyWipesReaderScratch(t *testing.T) {
	s := newTest(t)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	r := &scratchReader{src: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}
	r.left = r.src
	h, err := ReadPrivateKey(s, r)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Free(h)
	for i, b := range r.bufs {
		if !allZero(b[:cap(b)]) {
			t.Fatalf("buffer %d of %d given to the reader holds key bytes after ReadPrivateKey returned", i, len(r.bufs))
		}
	}
}
