package memshuffle

import (
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/nopreempt"
)

// TestBorrowKeyPins: with pin set, in the default build, the runtime
// cannot stop the adapters' computation with the key; without it (the
// control, and MAC's and the signers' calls, which run code that may
// park), it can. Secret mode keeps asynchronous preemptions out with
// secret.Do instead, and does not pin.
func TestBorrowKeyPins(t *testing.T) {
	if secretMode {
		t.Skip("secret mode does not pin")
	}
	if err := nopreempt.ProbeUsableForTest(); err != nil {
		t.Skip(err)
	}
	s := newTest(t)
	h, err := Random(s, 32)
	if err != nil {
		t.Fatal(err)
	}
	for _, pin := range []bool{false, true, false} {
		// Spin returns as soon as the collection completes: the long spin
		// costs time only where the pinned case is expected.
		spin := 2 * time.Second
		if pin {
			spin = 100 * time.Millisecond
		}
		p := nopreempt.StartProbeForTest()
		var preemptible bool
		err := borrowKey(s, h, pin, func([]byte) error {
			preemptible = p.Spin(spin)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Finish(); err != nil {
			t.Fatal(err)
		}
		if preemptible == pin {
			t.Errorf("pin %v: preemptible %v", pin, preemptible)
		}
	}
}
