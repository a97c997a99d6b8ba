package memshuffle

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"golang.org/x/sys/unix"
)

func init() {
	switch os.Getenv("MEMSHUFFLE_CHILD") {
	case "relock":
		os.Exit(shuffleRelockChild())
	case "relock-free":
		os.Exit(freeRelockChild())
	case "relock-cycle":
		os.Exit(shuffleRelockChild())
	}
}

// limitMemlock sets RLIMIT_MEMLOCK to 8 MiB, as ulimit -l 8192 does, in
// a helper process, and reports whether it could.
func limitMemlock() bool {
	const limit = 8 << 20
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: limit, Max: limit}); err != nil {
		fmt.Println("setrlimit:", err)
		return false
	}
	return true
}

// childVmLck reads the process's locked memory from /proc/self/status,
// or -1, in a helper process, which has no testing.T.
func childVmLck() int64 {
	n, ok := osmem.VMLocked()
	if !ok {
		return -1
	}
	return int64(n)
}

// shuffleRelockChild is the helper process of TestShuffleRelocksAtLimit
// and TestCycleRelocksAtLimit: about 5 MB of entries of mixed sizes under
// an 8 MiB RLIMIT_MEMLOCK, so a Shuffle or a background cycle cannot lock
// its fresh arenas while the old ones are still mapped, but can once it
// has released them.
func shuffleRelockChild() int {
	if !limitMemlock() {
		return 1
	}
	s, err := New(WithShards(1))
	if err != nil {
		fmt.Println("New:", err)
		return 1
	}
	// The same moves, by a background cycle or by Shuffle.
	move := s.Shuffle
	if os.Getenv("MEMSHUFFLE_CHILD") == "relock-cycle" {
		move = func() error {
			if !s.cycle(context.Background(), nil) {
				return ErrClosed
			}
			return nil
		}
	}
	r := mrand.New(mrand.NewPCG(1, 2))
	for range 5000 {
		if _, err := Alloc[byte](s, 500+r.IntN(1000)); err != nil {
			fmt.Println("Alloc:", err)
			return 1
		}
	}
	fail := 0
	for round := range 3 {
		if err := move(); err != nil {
			fmt.Println("move:", err)
			return 1
		}
		st := s.Stats()
		lck := childVmLck()
		fmt.Printf("uid=%d round=%d live=%d mapped=%d locked=%d unlocked=%d vmlck=%d\n",
			os.Getuid(), round, st.LiveBytes, st.MappedBytes, st.LockedBytes, st.UnlockedBytes, lck)
		if st.UnlockedBytes != 0 || st.LockedBytes != lck {
			fail = 1
		}
	}
	if err := s.check(); err != nil {
		fmt.Println("check:", err)
		return 1
	}
	s.Close()
	return fail
}

// TestShuffleRelocksAtLimit: under the default LockBestEffort, a Shuffle
// whose fresh arenas the memory-lock limit refused while the old arenas
// were still mapped locks them once it has released the old ones. It used
// to leave them unlocked until the next Shuffle, which mapped its own
// fresh arenas unlocked again: with entries of mixed sizes taking more than
// half of the limit, every entry sat in swappable memory after every
// Shuffle (as user nobody with ulimit -l 8192: 6 MiB unlocked, 4 KiB
// locked, after each of three).
func TestShuffleRelocksAtLimit(t *testing.T) { runAsNobody(t, "relock") }

// TestCycleRelocksAtLimit is TestShuffleRelocksAtLimit for a background
// cycle, which moves entries into fresh arenas step by step: at its end
// the arenas it mapped unlocked are locked. Half the entries (2.6 of 5.2
// MB) used to stay unlocked after every cycle, until the next one began.
func TestCycleRelocksAtLimit(t *testing.T) { runAsNobody(t, "relock-cycle") }

// runAsNobody runs a copy of the test binary as user nobody, playing the
// helper child, and returns its output; it fails the test if the helper
// fails. The test binary lives in a directory only root can enter: the
// child gets a copy it can run.
func runAsNobody(t *testing.T, child string) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to start a process as nobody")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	dir, err := os.MkdirTemp("", "memshuffle-relock")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	self, _ := os.Executable()
	bin := filepath.Join(dir, "memshuffle.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Dir = dir
	cmd.Env = []string{"MEMSHUFFLE_CHILD=" + child, "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatal("helper timed out")
	}
	// The child takes nobody's credentials before it execs, while it still
	// shares this process's memory (os/exec forks with CLONE_VM), and the
	// kernel keeps dumpability per memory map: that made this process
	// undumpable, and TestDisableCoreDumps, which checks that nothing but
	// DisableCoreDumps does that, failed when it ran after this.
	unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0)
	t.Logf("%s", out)
	if !strings.Contains(string(out), fmt.Sprintf("uid=%d ", uid)) {
		t.Fatal("helper did not run as nobody")
	}
	if err != nil {
		t.Fatalf("as nobody: %v", err)
	}
	return string(out)
}

// freeRelockChild is the helper process of TestFreeRelocksAtLimit: 12 MB
// of entries under an 8 MiB RLIMIT_MEMLOCK, so the last arenas are mapped
// unlocked, then the first 9 MB freed, which releases locked arenas.
func freeRelockChild() int {
	if !limitMemlock() {
		return 1
	}
	s, err := New(WithShards(1))
	if err != nil {
		fmt.Println("New:", err)
		return 1
	}
	var hs []Handle
	for range 12000 {
		h, err := Alloc[byte](s, 1000)
		if err != nil {
			fmt.Println("Alloc:", err)
			return 1
		}
		hs = append(hs, h)
	}
	peak := s.Stats()
	for _, h := range hs[:9000] {
		if err := s.Free(h); err != nil {
			fmt.Println("Free:", err)
			return 1
		}
	}
	st := s.Stats()
	lck := childVmLck()
	fmt.Printf("uid=%d peak unlocked=%d; live=%d mapped=%d locked=%d unlocked=%d vmlck=%d\n",
		os.Getuid(), peak.UnlockedBytes, st.LiveBytes, st.MappedBytes, st.LockedBytes, st.UnlockedBytes, lck)
	if err := s.check(); err != nil {
		fmt.Println("check:", err)
		return 1
	}
	if peak.UnlockedBytes == 0 || st.UnlockedBytes != 0 || st.LockedBytes != lck {
		return 1
	}
	s.Close()
	return 0
}

// TestFreeRelocksAtLimit: under LockBestEffort, arenas mapped unlocked at a
// peak above RLIMIT_MEMLOCK are locked once frees release locked arenas,
// without a Shuffle (see store.TestReleaseRelocks).
func TestFreeRelocksAtLimit(t *testing.T) { runAsNobody(t, "relock-free") }
