// Package scantest checks, in tests, that code which takes a secret out of
// the environment leaves no copy of it behind when storing it fails.
package scantest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"runtime/debug"
	"testing"

	"github.com/memshuffle/memshuffle"
	"github.com/memshuffle/memshuffle/internal/memscan"
)

// FailedMoveLeavesNoCopy sets the environment variable name to a fresh
// random secret and calls move with a closed Shuffler: move must fail with
// ErrClosed and leave no more copies of the secret in the process than
// there were before it, when the environment's own copies (which nothing
// can wipe) are all there is and show that the scan finds the secret. The
// collector is off meanwhile, so nothing freed is reused in between.
func FailedMoveLeavesNoCopy(t *testing.T, name string, move func(*memshuffle.Shuffler) error) {
	t.Helper()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	raw := make([]byte, 24)
	rand.Read(raw)
	secret := hex.EncodeToString(raw)
	t.Setenv(name, secret)
	p, err := memscan.NewPattern([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	count := func() int {
		t.Helper()
		hits, err := memscan.ScanProcess(os.Getpid(), p)
		if err != nil {
			t.Skipf("cannot scan this process: %v", err)
		}
		return len(hits)
	}
	s, err := memshuffle.New()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	before := count()
	if before == 0 {
		t.Fatal("control: the scan finds no copy of the secret the environment holds")
	}
	if err := move(s); !errors.Is(err, memshuffle.ErrClosed) {
		t.Fatalf("storing into a closed Shuffler: %v, want ErrClosed", err)
	}
	if after := count(); after > before {
		t.Errorf("%d copies of the secret after the failed store, %d before: a copy was left", after, before)
	}
}
