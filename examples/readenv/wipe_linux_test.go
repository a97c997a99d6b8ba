package main

import (
	"testing"

	"github.com/memshuffle/memshuffle"
	"github.com/memshuffle/memshuffle/internal/scantest"
)

// TestMoveEnvFailureWipesCopy: when the secret cannot be stored (here the
// Shuffler is closed), the []byte copy moveEnv made of it is wiped all the
// same; CopyFrom keeps its src on failure, for the caller to decide.
func TestMoveEnvFailureWipesCopy(t *testing.T) {
	scantest.FailedMoveLeavesNoCopy(t, testVar, func(s *memshuffle.Shuffler) error {
		_, err := moveEnv(s, testVar)
		return err
	})
}
