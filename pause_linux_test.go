package memshuffle

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// schedWindow tells a pause spent waiting for a CPU from one spent in the
// program: it remembers the calling thread and how long that thread had
// waited on the system's run queue (/proc/self/task/TID/schedstat) at mark.
type schedWindow struct {
	tid  int
	path string
	wait int64
}

func (w *schedWindow) mark() {
	if tid := syscall.Gettid(); tid != w.tid {
		w.tid, w.path = tid, "/proc/self/task/"+strconv.Itoa(tid)+"/schedstat"
	}
	w.wait = runQueueWait(w.path)
}

// waitedSince reports how long the thread the goroutine ran on at mark has
// waited for a CPU since, and whether the goroutine now runs on another
// thread; ok is false when the system does not say.
//
// A goroutine that moved is still measured on the thread it left: a
// thread kept off its CPU for milliseconds comes back to the preemption
// the runtime's monitor asked for meanwhile (it preempts a goroutine that
// has run for 10 ms), and the goroutine often resumes on another thread
// right after the pause. Dropping those samples left about 15% of the
// pauses over a millisecond unexplained (bench/NOTES.md).
func (w *schedWindow) waitedSince() (q time.Duration, moved, ok bool) {
	if w.tid == 0 || w.wait < 0 {
		return 0, false, false
	}
	now := runQueueWait(w.path)
	if now < 0 {
		return 0, false, false
	}
	return time.Duration(now - w.wait), syscall.Gettid() != w.tid, true
}

// runQueueWait is the second field of a thread's schedstat file at path:
// the nanoseconds the thread has spent runnable but not running.
func runQueueWait(path string) int64 {
	raw, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	f := strings.Fields(string(raw))
	if len(f) < 2 {
		return -1
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// TestSchedWindowFollowsMarkThread: a goroutine that moved to another
// thread since mark is measured on the thread it left, whose run-queue
// wait includes the pause. Two threads pinned to one CPU spin together, so
// the marked thread waits for the CPU while it is taken; waitedSince,
// called from the other thread, must report that wait and the move.
func TestSchedWindowFollowsMarkThread(t *testing.T) {
	if _, err := os.Stat("/proc/thread-self/schedstat"); err != nil {
		t.Skip("no schedstat:", err)
	}
	var cpus unix.CPUSet
	if err := unix.SchedGetaffinity(0, &cpus); err != nil {
		t.Skip("no affinity:", err)
	}
	cpu := -1
	for i := range 1024 {
		if cpus.IsSet(i) {
			cpu = i
			break
		}
	}
	var one unix.CPUSet
	one.Set(cpu)
	const spin = 150 * time.Millisecond
	var w schedWindow
	marked, done, release := make(chan error), make(chan struct{}), make(chan struct{})
	defer close(release)
	go func() {
		runtime.LockOSThread() // the thread ends with the goroutine: its affinity stays its own
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			marked <- err
			return
		}
		w.mark()
		marked <- nil
		for t0 := time.Now(); time.Since(t0) < spin; {
		}
		close(done)
		<-release // the thread, and its schedstat, last until it is read
	}()
	if err := <-marked; err != nil {
		t.Skip("cannot pin a thread:", err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var prev unix.CPUSet
	if err := unix.SchedGetaffinity(0, &prev); err != nil {
		t.Fatal(err)
	}
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Skip("cannot pin a thread:", err)
	}
	defer func() { _ = unix.SchedSetaffinity(0, &prev) }()
	for t0 := time.Now(); time.Since(t0) < spin; {
	}
	<-done
	q, moved, ok := w.waitedSince()
	if !ok || !moved {
		t.Fatalf("waitedSince from another thread: ok %v, moved %v; want both", ok, moved)
	}
	// Sharing one CPU, the marked thread was off it for about half its
	// spin; a quarter leaves room for a busy CPU's other tasks.
	if q < spin/4 {
		t.Fatalf("marked thread waited %v for its CPU, want at least %v", q, spin/4)
	}
}
