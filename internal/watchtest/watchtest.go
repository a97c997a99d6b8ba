// Package watchtest checks, in tests, that code run under
// aesctr.WatchSignals leaves no signal frame behind: a stand-in for foreign
// assembly (aesctr.SignalProbeForTest) puts a marker in a frame, and a
// scan of the process after the call must not find it.
package watchtest

import (
	"os"
	"testing"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/memscan"
)

// Probe is a marker for aesctr.SignalProbeForTest and the test that scans
// for it.
type Probe struct {
	// Marker is what the stand-in loads into the registers; Left gives
	// it fresh random bytes before each call.
	Marker [16]byte
	t      *testing.T
}

// New returns a Probe for t, or skips t where the canaries, and so the
// watch, are not available (fails it instead under
// MEMSHUFFLE_EXPECT_CANARY=1); what names the watched code in the message.
func New(t *testing.T, what string) *Probe {
	t.Helper()
	p := &Probe{t: t}
	if !aesctr.SignalProbeForTest(&p.Marker) {
		if os.Getenv("MEMSHUFFLE_EXPECT_CANARY") == "1" {
			t.Fatal("MEMSHUFFLE_EXPECT_CANARY=1, but the canaries are not available")
		}
		t.Skipf("the canaries are not available here: %s not watched", what)
	}
	return p
}

// Left runs f as memscan.MarkerLeftAfter does and reports whether the
// marker is left in the process. A scan that cannot run skips the test.
func (p *Probe) Left(f func()) bool {
	p.t.Helper()
	left, err := memscan.MarkerLeftAfter(&p.Marker, f)
	if err != nil {
		p.t.Skip(err)
	}
	return left
}

// Control runs bare, the stand-in called with no watch, five times, and
// fails the test unless the marker was left at least once: else the probe
// or the scan does not work. A signal on the thread between the call and
// the scan's lock overwrites the frame, so it may miss now and then.
func (p *Probe) Control(what string, bare func()) {
	p.t.Helper()
	control := 0
	for range 5 {
		if p.Left(bare) {
			control++
		}
	}
	if control == 0 {
		p.t.Fatalf("%s never left its marker: the probe or the scan does not work", what)
	}
	p.t.Logf("control: %s left its marker %d of 5 times", what, control)
}
