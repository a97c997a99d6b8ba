package memshuffle

import "testing"

// shortOr returns full, or short in -short mode. .ci/run runs the README's
// go test ./... in full once, then the package again under the race
// detector, in secret mode, under Wine and as an ordinary user, with
// -short: there the tests whose length buys confidence rather than
// coverage run shorter, on the same paths.
func shortOr[T any](full, short T) T {
	if testing.Short() {
		return short
	}
	return full
}

// skipScanUnderRace skips t in a race build: its subject is a scan of the
// whole process, which takes seconds over the race detector's shadow
// memory, and its calls run on one goroutine, where the detector has
// nothing to find. The other builds scan.
func skipScanUnderRace(t *testing.T) {
	t.Helper()
	if raceBuild {
		t.Skip("scans the whole process, which takes seconds per scan under -race; the other builds scan")
	}
}
