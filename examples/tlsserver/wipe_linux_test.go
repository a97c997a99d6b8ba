package main

import (
	"os"
	"testing"

	"github.com/memshuffle/memshuffle"
	"github.com/memshuffle/memshuffle/internal/scantest"
)

// TestTokenFromEnvFailureWipesCopy: when the token cannot be stored (here
// the Shuffler is closed), the []byte copy tokenFromEnv made of it is wiped
// all the same; CopyFrom keeps its src on failure, for the caller to decide.
func TestTokenFromEnvFailureWipesCopy(t *testing.T) {
	scantest.FailedMoveLeavesNoCopy(t, tokenEnv, func(s *memshuffle.Shuffler) error {
		v, _ := os.LookupEnv(tokenEnv) // as loadToken gets it: a part of the environment's copy
		_, err := tokenFromEnv(s, v)
		return err
	})
}
