//go:build linux

package osmem

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	_ "unsafe" // for go:linkname

	"golang.org/x/sys/unix"
)

// Headroom is the least of a process's address-space and data limits
// (RLIMIT_AS, RLIMIT_DATA: `ulimit -v`, `ulimit -d`, LimitAS= and
// LimitDATA= in a systemd unit) Map leaves to everything else, where
// either is set; [HeadroomNow] adds the runtime's threads to it. The Go
// runtime maps memory to grow its heap (64 MiB of address space at a time
// on 64-bit Linux), for its garbage collector's work queues and for every
// new thread (in a program that links cgo, as one importing net does
// where cgo is enabled, a stack of RLIMIT_STACK, 8 MiB by default), and
// it cannot fail gracefully: a refused mapping ends the process, with
// "fatal error: runtime: out of memory", a failed pthread_create or, in
// the Go 1.26 collector, a nil dereference. Arenas that took a limit to
// its last byte left the process to die at its next heap growth or
// thread, where a Map refused now is an error the caller can handle.
// 64 MiB holds 24 MiB more heap and four threads of the program's own in
// a cgo program, what the root package's TestDataLimitRunsOut asks for
// after the refusal.
const Headroom = 64 << 20

// HeadroomNow is what Map leaves of RLIMIT_AS and RLIMIT_DATA now:
// Headroom for the program, and in a program that links cgo one thread
// stack more for each processor the runtime may run (GOMAXPROCS, read at
// each call), for the threads the runtime starts on its own: a
// collection's workers, and threads that take over a processor from one
// blocked in a system call. Without cgo a thread's stack comes from the
// Go heap, a few KiB, inside Headroom. With Headroom alone, the helper
// of TestDataLimitRunsOut, run as nobody at GOMAXPROCS=4 on two CPUs kept
// busy, died in pthread_create in 8 runs of 250; with this, in none of
// 250 interleaved with them.
//
// It counts a stack for every processor, the threads that run already
// included, whose stacks the process holds already: at GOMAXPROCS=128
// with 8 MiB stacks, 1,088 MiB. A program that runs that many threads at
// once needs their stacks under the limit anyway.
func HeadroomNow() uint64 {
	if !iscgo {
		return Headroom
	}
	return headroomFor(runtime.GOMAXPROCS(0), threadStackSize)
}

// headroomFor is HeadroomNow in a program that links cgo, with procs
// processors and thread stacks of stack bytes. A stack is counted as at
// most maxThreadStack, more than any address space holds, so that the sum
// cannot wrap around.
func headroomFor(procs int, stack uint64) uint64 {
	return Headroom + uint64(max(procs, 0))*min(stack, maxThreadStack)
}

// maxThreadStack bounds the stack headroomFor counts for a thread.
const maxThreadStack = 1 << 40

// iscgo is the runtime's record of whether runtime/cgo is linked, which
// sets it, and with it whether new threads are pthreads with stacks
// mapped by the C library.
//
//go:linkname iscgo runtime.iscgo
var iscgo bool

// defaultThreadStack is taken for a thread's stack where RLIMIT_STACK is
// unlimited or cannot be read: glibc gives 2 MiB on amd64 then, and 8 MiB
// is the usual RLIMIT_STACK.
const defaultThreadStack = 8 << 20

// threadStackSize is threadStack at the start of the process, when glibc
// reads RLIMIT_STACK for the threads it makes from then on. (musl gives a
// thread 128 KiB whatever the limit: there this counts far more than the
// threads take.)
var threadStackSize = threadStack()

// threadStack is the size of the stack glibc maps for a new thread:
// RLIMIT_STACK, where it is set and readable.
func threadStack() uint64 {
	var l unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_STACK, &l) != nil || l.Cur == unix.RLIM_INFINITY || l.Cur == 0 {
		return defaultThreadStack
	}
	return l.Cur
}

// checkHeadroom refuses a mapping of n bytes that would leave less than
// HeadroomNow of RLIMIT_AS or RLIMIT_DATA, where either is set. What the
// process holds against them is VmSize and VmData in /proc/self/status;
// where that cannot be read, a probe asks for n bytes and the headroom at
// once, of the kind the region is, but never touched, and gives them back.
// Without either limit it costs two getrlimit calls.
//
// A system call filter that refuses getrlimit lifts no limit: the limits
// are read from /proc/self/limits then, and where that cannot be read
// either, a limit may be set, so the probe decides.
//
// Secret memory is a shared mapping, which RLIMIT_DATA does not count:
// only RLIMIT_AS holds it back.
func checkHeadroom(n int, f Flags) error {
	as, errAS := getLimit(unix.RLIMIT_AS, "Max address space")
	data, errData := getLimit(unix.RLIMIT_DATA, "Max data size")
	asKnown, dataKnown := errAS == nil, errData == nil
	if dataKnown && data.Cur == 0 {
		// The kernel reads a soft limit of 0 as the hard one (for
		// Valgrind), and the runtime goes on mapping up to that.
		data.Cur = data.Max
	}
	asSet := !asKnown || as.Cur != unix.RLIM_INFINITY
	dataSet := !dataKnown || data.Cur != unix.RLIM_INFINITY
	dataHolds := dataSet && !f.Secret
	if !asSet && !dataHolds {
		return nil
	}
	refuse := func(err error) error {
		return fmt.Errorf("osmem: mmap of %d bytes: %w (RLIMIT_AS %s, RLIMIT_DATA %s): %w",
			n, ErrHeadroom, limitText(as, asKnown), limitText(data, dataKnown), err)
	}
	known := (!asSet || asKnown) && (!dataHolds || dataKnown)
	room := HeadroomNow()
	if size, dataHeld, ok := vmHeld(); ok && known {
		// The region with its guard pages, and the alignment Map asks
		// for before it trims the excess.
		need := uint64(n) + uint64(2*pageSize+HugePageSize) + room
		if asSet && size+need > as.Cur || dataHolds && dataHeld+need > data.Cur {
			return refuse(unix.ENOMEM)
		}
		return nil
	}
	// A probe of memory that mlockall(MCL_FUTURE) would lock and fault in
	// is taken only where /proc is not there to ask. Private and writable,
	// both limits count it; inaccessible, only RLIMIT_AS does, as it does
	// secret memory.
	size := uintptr(n) + uintptr(room)
	prot := unix.PROT_READ | unix.PROT_WRITE
	if f.Secret {
		prot = unix.PROT_NONE
	}
	p, err := unix.MmapPtr(-1, 0, nil, size, prot, unix.MAP_PRIVATE|unix.MAP_ANON|unix.MAP_NORESERVE)
	if err != nil {
		return refuse(err)
	}
	_ = unix.MunmapPtr(p, size)
	return nil
}

// readStatus reads /proc/self/status; tests replace it to take the probe.
var readStatus = func() ([]byte, error) { return os.ReadFile("/proc/self/status") }

// vmHeld is VMHeld, read through readStatus.
func vmHeld() (size, data uint64, ok bool) {
	b, err := readStatus()
	if err != nil {
		return 0, 0, false
	}
	return parseVMHeld(b)
}

// VMHeld reports the process's address space (VmSize) and data (VmData),
// in bytes, as the kernel holds them against RLIMIT_AS and RLIMIT_DATA,
// from /proc/self/status; ok is false where that cannot be read.
func VMHeld() (size, data uint64, ok bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, false
	}
	return parseVMHeld(b)
}

// VMLocked reports the memory the process has locked (VmLck), in bytes,
// from /proc/self/status; ok is false where that cannot be read. Tests
// hold the Shufflers' own count of locked bytes against it.
func VMLocked() (locked uint64, ok bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	v, ok := statusBytes(b, "VmLck:")
	return v[0], ok
}

// parseVMHeld reads VmSize and VmData from the text of a status file.
func parseVMHeld(b []byte) (size, data uint64, ok bool) {
	v, ok := statusBytes(b, "VmSize:", "VmData:")
	return v[0], v[1], ok
}

// statusBytes reads the fields named, each a line "Name: n kB", from the
// text of a status file, in bytes; ok is false unless every one is there.
func statusBytes(b []byte, names ...string) (v []uint64, ok bool) {
	v = make([]uint64, len(names))
	seen := make([]bool, len(names))
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		i := slices.Index(names, f[0])
		if i < 0 {
			continue
		}
		kb, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return make([]uint64, len(names)), false
		}
		v[i], seen[i] = kb<<10, true
	}
	if slices.Contains(seen, false) {
		return make([]uint64, len(names)), false
	}
	return v, true
}

func limitText(l unix.Rlimit, known bool) string {
	switch {
	case !known:
		return "unknown"
	case l.Cur == unix.RLIM_INFINITY:
		return "unlimited"
	}
	return fmt.Sprintf("%d bytes", l.Cur)
}
