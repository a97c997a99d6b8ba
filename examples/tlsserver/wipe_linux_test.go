package main

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

// TestTokenFromEnvFailureWipesCopy: when the token cannot be stored (here
// the Shuffler is closed), the []byte copy tokenFromEnv made of it is wiped
// all the same; CopyFrom keeps its src on failure, for the caller to decide. The
// environment's own copies stay (they cannot be wiped), so the copies
// found after are counted against those found before, which are the
// scan's proof that it finds the secret. The collector is off, so nothing
// freed is reused in between.
func TestTokenFromEnvFailureWipesCopy(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	raw := make([]byte, 24)
	rand.Read(raw)
	secret := hex.EncodeToString(raw)
	t.Setenv(tokenEnv, secret)
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
	v, _ := os.LookupEnv(tokenEnv) // as loadToken gets it: a part of the environment's copy
	if _, err := tokenFromEnv(s, v); !errors.Is(err, memshuffle.ErrClosed) {
		t.Fatalf("tokenFromEnv into a closed Shuffler: %v, want ErrClosed", err)
	}
	if after := count(); after > before {
		t.Errorf("%d copies of the secret after a failed tokenFromEnv, %d before: its []byte copy was left", after, before)
	}
}
