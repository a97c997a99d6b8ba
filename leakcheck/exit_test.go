package leakcheck

import (
	"os"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/memshuffle/memshuffle"
)

// PurgeAllOnSignal's watchers end with their stop functions, however many
// there are.
func TestPurgeAllOnSignalStops(t *testing.T) {
	defer goleak.VerifyNone(t)
	s, err := memshuffle.New()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stop1 := memshuffle.PurgeAllOnSignal(nil)
	stop2 := memshuffle.PurgeAllOnSignal(func(os.Signal) {}, syscall.SIGTERM)
	stop1()
	stop2()
	stop2()
}
