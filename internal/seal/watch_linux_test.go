package seal

import (
	"testing"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/watchtest"
)

// probeAEAD is a cipher.AEAD whose Seal and Open do what the assembly of
// crypto/aes's GCM or x/crypto's ChaCha20-Poly1305 may have done when a
// signal came: its marker is in the vector registers while the thread
// takes a signal, which saves them in a frame on its signal stack.
type probeAEAD struct{ marker *[16]byte }

func (probeAEAD) NonceSize() int { return 12 }
func (probeAEAD) Overhead() int  { return 16 }

func (p probeAEAD) Seal(dst, _, plain, _ []byte) []byte {
	aesctr.SignalProbeForTest(p.marker)
	return append(dst, make([]byte, len(plain)+16)...)
}

func (p probeAEAD) Open(dst, _, sealed, _ []byte) ([]byte, error) {
	aesctr.SignalProbeForTest(p.marker)
	return append(dst, make([]byte, len(sealed)-16)...), nil
}

// TestAEADCallsWatched runs the AEAD modes' Seal and Open around an AEAD
// that leaves a marker in a signal frame, on a goroutine of its own that
// is not locked to its thread during the call, and scans the process for two adjacent
// copies of the marker, as two registers of a frame hold them (one copy
// may be the scan's own, in a register a signal saved meanwhile). Called
// bare, the AEAD leaves the marker (the control); through Seal and Open,
// whose watch wipes the signal stack, it must not.
func TestAEADCallsWatched(t *testing.T) {
	if raceEnabled {
		t.Skip("a scan of the process per call is too slow under the race detector")
	}
	p := watchtest.New(t, "AEAD calls are")
	a := probeAEAD{&p.Marker}
	x := aeadCipher{a: a}
	p.Control("the bare AEAD", func() { a.Seal(nil, nil, make([]byte, 32), nil) })
	scr := new(Scratch)
	sealed := make([]byte, 48)
	for i := range 10 {
		if p.Left(func() { x.Seal(sealed, make([]byte, 32), uint64(i), scr) }) {
			t.Errorf("Seal %d: the marker is left in memory", i)
		}
		if p.Left(func() {
			if err := x.Open(make([]byte, 32), sealed, uint64(i), scr); err != nil {
				t.Error(err)
			}
		}) {
			t.Errorf("Open %d: the marker is left in memory", i)
		}
	}
}
