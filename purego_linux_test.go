package memshuffle

import "testing"

// skipGenericGCMSchedule skips a test whose scans look for the AES-256-GCM
// key schedule where crypto/aes lays it out otherwise (see pureGo): their
// controls would find no key in use.
func skipGenericGCMSchedule(t *testing.T) {
	t.Helper()
	if pureGo {
		t.Skip("purego: crypto/aes stores the GCM key schedule as native-order words, which the scans do not search")
	}
}
