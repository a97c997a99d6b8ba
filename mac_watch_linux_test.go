package memshuffle

import (
	"crypto/sha256"
	"hash"
	"testing"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/watchtest"
)

// probeHash is SHA-256 whose Write does what the hash's assembly may have
// done when a signal came: its marker is in the vector registers while the
// thread takes a signal, which saves them in a frame on its signal stack.
type probeHash struct {
	hash.Hash
	marker *[16]byte
}

func (p probeHash) Write(b []byte) (int, error) {
	aesctr.SignalProbeForTest(p.marker)
	return p.Hash.Write(b)
}

// TestMACWatched computes a MAC with a hash that leaves a marker in a
// signal frame, on a goroutine not locked to its thread, and scans the
// process for two adjacent copies of the marker, as two registers of a
// frame hold them: MAC's watch must have wiped the frame. The control is
// the same hash written to outside MAC, which leaves the marker. Run after
// the package's other tests, some of which make cgo calls (os/user looks
// up the user nobody), it runs on threads that have run C code, where the
// watch has to check the signal stack with the kernel; before it did, it
// found the marker after 1 or 2 of its 5 MACs there.
func TestMACWatched(t *testing.T) {
	if raceBuild {
		t.Skip("a scan of the process per call is too slow under the race detector")
	}
	p := watchtest.New(t, "MAC is")
	s := newTest(t)
	key, err := Random(s, 32)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Random(s, 32)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		newHash func() hash.Hash
	}{
		{"hash", func() hash.Hash { return probeHash{sha256.New(), &p.Marker} }},
		// A hash that calls the Shuffler back after its frame landed: the
		// cipher of that Rent and Return plants the canaries again, and
		// must not hide the frame from MAC's watch.
		{"hash calling back", func() hash.Hash { return reentHash{sha256.New(), &p.Marker, s, other, t} }},
	} {
		p.Control("the bare "+c.name, func() { c.newHash().Write([]byte("message")) })
		for i := range 5 {
			if p.Left(func() {
				if _, err := MAC(s, key, c.newHash, []byte("message"), nil); err != nil {
					t.Error(err)
				}
			}) {
				t.Errorf("%s, MAC %d: the marker is left in memory", c.name, i)
			}
		}
	}
}

// reentHash is probeHash that, after its signal frame has landed, calls
// the Shuffler back: a Rent and Return of another entry.
type reentHash struct {
	hash.Hash
	marker *[16]byte
	s      *Shuffler
	other  Handle
	t      *testing.T
}

func (p reentHash) Write(b []byte) (int, error) {
	aesctr.SignalProbeForTest(p.marker)
	rentOther(p.t, p.s, p.other)
	return p.Hash.Write(b)
}

// rentOther rents and returns other: a call back into the Shuffler, whose
// cipher plants the signal-stack canaries anew.
func rentOther(t *testing.T, s *Shuffler, other Handle) {
	t.Helper()
	if _, err := RentSlice[byte](s, other); err != nil {
		t.Error(err)
	} else if err := s.Return(other); err != nil {
		t.Error(err)
	}
}
