package memshuffle

import (
	"testing"

	"github.com/memshuffle/memshuffle/internal/store"
)

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

// skipOversizeUnderRace skips, in a race build, a case whose entry is
// larger than store.MaxArenaSize and so takes an arena of its own: it runs
// on one goroutine (the hooks that act with the shard unlocked run inline),
// where the detector has nothing to find, and its 16 MiB of instrumented
// copies and compares take seconds per case under -race, a minute over the
// tests that have such cases. The other builds run it.
func skipOversizeUnderRace(t *testing.T, size int) {
	t.Helper()
	if raceBuild && size > store.MaxArenaSize {
		t.Skip("an oversize entry on one goroutine: run by the builds without -race")
	}
}
