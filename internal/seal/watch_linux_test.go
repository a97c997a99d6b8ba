package seal

import (
	"crypto/rand"
	"os"
	"testing"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/memscan"
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
	var marker [16]byte
	rand.Read(marker[:])
	if !aesctr.SignalProbeForTest(&marker) {
		if os.Getenv("MEMSHUFFLE_EXPECT_CANARY") == "1" {
			t.Fatal("MEMSHUFFLE_EXPECT_CANARY=1, but the canaries are not available")
		}
		t.Skip("the canaries are not available here: AEAD calls are not watched")
	}
	a := probeAEAD{&marker}
	x := aeadCipher{a: a}
	found := func(f func()) bool {
		t.Helper()
		left, err := memscan.MarkerLeftAfter(&marker, f)
		if err != nil {
			t.Skip(err)
		}
		return left
	}
	// A signal on the thread between the call and the lock after it
	// overwrites the frame, so the control may miss now and then.
	control := 0
	for range 5 {
		if found(func() { a.Seal(nil, nil, make([]byte, 32), nil) }) {
			control++
		}
	}
	if control == 0 {
		t.Fatal("the bare AEAD never left its marker: the probe or the scan does not work")
	}
	t.Logf("control: the bare AEAD left its marker %d of 5 times", control)
	scr := new(Scratch)
	sealed := make([]byte, 48)
	for i := range 10 {
		if found(func() { x.Seal(sealed, make([]byte, 32), uint64(i), scr) }) {
			t.Errorf("Seal %d: the marker is left in memory", i)
		}
		if found(func() {
			if err := x.Open(make([]byte, 32), sealed, uint64(i), scr); err != nil {
				t.Error(err)
			}
		}) {
			t.Errorf("Open %d: the marker is left in memory", i)
		}
	}
}
