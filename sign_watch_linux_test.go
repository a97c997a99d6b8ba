package memshuffle

import (
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/watchtest"
)

// reentRand is crypto/rand's reader whose Read leaves a marker in a signal
// frame, as the signature's assembly may have, and then calls the
// Shuffler back: a Rent and Return of another entry.
type reentRand struct {
	marker *[16]byte
	s      *Shuffler
	other  Handle
	t      *testing.T
}

func (r reentRand) Read(p []byte) (int, error) {
	aesctr.SignalProbeForTest(r.marker)
	rentOther(r.t, r.s, r.other)
	return rand.Read(p)
}

// TestSignWatchedWhenRandCallsBack: an RSA-PSS Signer reads its salt from
// the caller's rand inside the watch of the signature; a rand that calls
// the Shuffler back must not hide a frame that landed before from it.
func TestSignWatchedWhenRandCallsBack(t *testing.T) {
	if raceBuild {
		t.Skip("a scan of the process per call is too slow under the race detector")
	}
	p := watchtest.New(t, "Sign is")
	s := newTest(t)
	cases := randSignCases(t)
	sg := newTestSigner(t, s, cases[1].key)
	other, err := Random(s, 32)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("message"))
	r := reentRand{&p.Marker, s, other, t}
	p.Control("the bare rand", func() { var b [8]byte; r.Read(b[:]) })
	left := 0
	for range 5 {
		if p.Left(func() {
			if _, err := sg.Sign(r, digest[:], cases[1].opts); err != nil {
				t.Error(err)
			}
		}) {
			left++
		}
	}
	if left > 0 {
		t.Errorf("the marker is left in memory after %d of 5 signatures", left)
	}
}
