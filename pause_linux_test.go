package memshuffle

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// schedWindow tells a pause spent waiting for a CPU from one spent in the
// program: it remembers the calling thread and how long that thread had
// waited on the system's run queue (/proc/thread-self/schedstat) at mark.
type schedWindow struct {
	tid  int
	wait int64
}

func (w *schedWindow) mark() {
	w.tid, w.wait = syscall.Gettid(), runQueueWait()
}

// waitedSince reports how long the calling thread has waited for a CPU
// since mark, and false when the goroutine has moved to another thread
// since, or the system does not say.
func (w *schedWindow) waitedSince() (time.Duration, bool) {
	if w.tid == 0 || syscall.Gettid() != w.tid || w.wait < 0 {
		return 0, false
	}
	now := runQueueWait()
	if now < 0 {
		return 0, false
	}
	return time.Duration(now - w.wait), true
}

// runQueueWait is the second field of /proc/thread-self/schedstat: the
// nanoseconds the thread has spent runnable but not running.
func runQueueWait() int64 {
	raw, err := os.ReadFile("/proc/thread-self/schedstat")
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
