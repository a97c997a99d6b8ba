package memshuffle

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestStaleSliceAfterShuffleFaults writes through a slice kept after
// Return once a Shuffle has moved the entry and unmapped the arena it was
// in: the process dies of a fault, which no recover catches. It runs in a
// child process, which is expected to die.
func TestStaleSliceAfterShuffleFaults(t *testing.T) {
	if os.Getenv("MEMSHUFFLE_CHILD") == "stale" {
		s, err := New(WithShards(1))
		if err != nil {
			t.Fatal(err)
		}
		h, err := CopyFrom(s, []byte("a secret"))
		if err != nil {
			t.Fatal(err)
		}
		stale, err := RentSlice[byte](s, h)
		if err != nil {
			t.Fatal(err)
		}
		s.Return(h)
		if err := s.Shuffle(); err != nil {
			t.Fatal(err)
		}
		println("shuffled")
		stale[0] = 1
		println("wrote through the stale slice")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStaleSliceAfterShuffleFaults$")
	cmd.Env = append(os.Environ(), "MEMSHUFFLE_CHILD=stale")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "shuffled") || !strings.Contains(string(out), "unexpected fault address") ||
		strings.Contains(string(out), "wrote through") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
