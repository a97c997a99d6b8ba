package memshuffle

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/memscan"
	"github.com/memshuffle/memshuffle/internal/seal"
)

func init() {
	if os.Getenv("MEMSHUFFLE_CHILD") == "watchstack" {
		os.Exit(watchStackChild())
	}
}

// TestWatchingRealCore runs watching, which watchedInFlight asks before it
// leaves out a hit, on a gcore dump of a real process: a thread whose
// goroutine is inside a seal Guard, where a signal left a frame holding a
// marker on the thread's signal stack, and a thread outside any, both
// blocked in a system call on their goroutines' stacks. Only the first is
// watching that signal stack. On synthetic cores (TestWatchedInFlight)
// watching finds what the stack is made to hold; here it finds what the
// compiled Guard keeps.
func TestWatchingRealCore(t *testing.T) {
	if copiesUnderRace {
		t.Skip("a dump of a -race build holds its shadow memory too")
	}
	gcore, err := exec.LookPath("gcore")
	if err != nil {
		t.Skip("no gcore")
	}
	asm, err := loadAesctrAsm(os.Args[0], filepath.Join("internal", "aesctr"))
	if err != nil {
		t.Skipf("cannot read the test binary's line table: %v", err)
	}
	marker := make([]byte, 16)
	for i := range marker {
		marker[i] = byte(0xa5 ^ i*29)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "MEMSHUFFLE_CHILD=watchstack", "MEMSHUFFLE_MARKER="+hex.EncodeToString(marker))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		t.Fatal("helper said nothing")
	}
	var guardedTID, plainTID int
	switch line := sc.Text(); {
	case line == "no canaries":
		t.Skip("the signal watch cannot be used here")
	default:
		if _, err := fmt.Sscanf(line, "ready %d %d", &guardedTID, &plainTID); err != nil {
			t.Fatalf("helper said %q", line)
		}
	}
	pid := cmd.Process.Pid
	prefix := filepath.Join(t.TempDir(), "core")
	if b, err := exec.Command(gcore, "-o", prefix, strconv.Itoa(pid)).CombinedOutput(); err != nil {
		t.Skipf("gcore failed (ptrace not permitted here?): %v\n%s", err, b)
	}
	path := prefix + "." + strconv.Itoa(pid)
	p, err := memscan.NewPattern(marker)
	if err != nil {
		t.Fatal(err)
	}
	hits, err := memscan.ScanCore(path, p)
	if err != nil {
		t.Fatal(err)
	}
	c, threads, maps := openCoreThreads(t, path)
	defer c.Close()
	at, err := asm.at(maps)
	if err != nil {
		t.Fatal(err)
	}
	thread := func(tid int) memscan.Thread {
		for _, th := range threads {
			if th.TID == tid {
				return th
			}
		}
		t.Fatalf("thread %d not in the core", tid)
		return memscan.Thread{}
	}
	guarded, plain := thread(guardedTID), thread(plainTID)
	seen := map[uint64]bool{}
	for _, h := range hits {
		fr, err := c.SignalFrameAt(h.Addr)
		if err != nil || seen[fr.Addr] {
			continue
		}
		seen[fr.Addr] = true
		if !watching(c, at, guarded.RSP, fr.StackHi) {
			t.Errorf("thread %d, inside a Guard, not watching the stack of the %v", guarded.TID, fr)
		}
		if watching(c, at, plain.RSP, fr.StackHi) {
			t.Errorf("thread %d, outside any Guard, watching the stack of the %v", plain.TID, fr)
		}
	}
	if len(seen) == 0 {
		t.Fatalf("the marker in no signal frame of the core (%d hits)", len(hits))
	}
}

// watchStackChild is the helper process of TestWatchingRealCore: it leaves
// the marker in a signal frame inside a Guard and blocks there, and blocks
// another locked thread outside any, until its stdin closes.
func watchStackChild() int {
	marker, err := hex.DecodeString(os.Getenv("MEMSHUFFLE_MARKER"))
	if err != nil || len(marker) != 16 {
		fmt.Println("bad marker")
		return 1
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		fmt.Println("pipe:", err)
		return 1
	}
	guardedTID, plainTID := make(chan int, 1), make(chan int, 1)
	block := func() {
		// A blocking read on a descriptor the runtime does not poll: the
		// thread waits in the system call on the goroutine's stack.
		var b [1]byte
		unix.Read(fds[0], b[:])
	}
	go func() {
		seal.Guarded(false, false, func() {
			if !aesctr.SignalProbeForTest((*[16]byte)(marker)) {
				guardedTID <- -1
				return
			}
			guardedTID <- unix.Gettid()
			block()
		})
	}()
	go func() {
		runtime.LockOSThread()
		plainTID <- unix.Gettid()
		block()
	}()
	g, p := <-guardedTID, <-plainTID
	if g == -1 {
		fmt.Println("no canaries")
		return 0
	}
	fmt.Println("ready", g, p)
	bufio.NewScanner(os.Stdin).Scan()
	unix.Write(fds[1], []byte{0, 0})
	return 0
}
