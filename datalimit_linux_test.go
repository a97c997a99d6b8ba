package memshuffle

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

func init() {
	if os.Getenv("MEMSHUFFLE_CHILD") == "datalimit" {
		os.Exit(dataLimitChild())
	}
}

// TestDataLimitRunsOut: a program held to a data limit (RLIMIT_DATA, as
// `ulimit -d` or LimitDATA= in a systemd unit set it) that allocates
// entries until it is refused gets ErrOutOfMemory and goes on running: its
// heap then grows by 24 MiB, four threads run at once, and every entry
// reads back. Arenas used to take the limit to its last byte (241 MiB of
// entries under a limit 256 MiB above what the process held), and the
// runtime's next heap growth or thread ended the process: "fatal error:
// runtime: out of memory", a failed pthread_create, or a segmentation
// fault in the collector, in three runs out of three.
//
// What the helper asks for after the refusal stays inside osmem.Headroom:
// in a program that links cgo each thread's stack is 8 MiB of the limit,
// so 24 MiB of heap and four threads are 56 of its 64 MiB. Eight threads
// and 48 MiB, asked for once, came to 112 MiB and passed only while the
// threads happened to run one after another on a cached stack: one run
// in 20 on a loaded machine died in pthread_create. The helper runs at
// GOMAXPROCS=4, where the runtime may start threads of its own beside the
// four: with a headroom fixed at 64 MiB, 8 runs in 250 as nobody on two
// CPUs kept busy by two loops died in pthread_create, and none of 250
// interleaved with them with osmem.HeadroomNow, which leaves a thread's
// stack more for each processor.
func TestDataLimitRunsOut(t *testing.T) {
	if raceBuild {
		t.Skip("the race detector's shadow memory counts against the limit")
	}
	runChildOK(t, "datalimit", "GOMAXPROCS=4")
}

// TestHeadroomNowCgo: this test binary links cgo (the C library is
// mapped), so each new thread's stack, RLIMIT_STACK in size, is taken
// from the data limit, and the headroom Map leaves grows by one such
// stack per processor. Without it the runtime's threads beyond the
// program's four had no room (TestDataLimitRunsOut).
func TestHeadroomNowCgo(t *testing.T) {
	skipUnlessCgo(t)
	var stack unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_STACK, &stack); err != nil {
		t.Fatal(err)
	}
	// As osmem counts a stack: 8 MiB where unlimited, at most 1 TiB.
	per := stack.Cur
	if per == unix.RLIM_INFINITY || per == 0 {
		per = 8 << 20
	}
	per = min(per, 1<<40)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	two := osmem.HeadroomNow()
	runtime.GOMAXPROCS(6)
	six := osmem.HeadroomNow()
	if two != osmem.Headroom+2*per || six != two+4*per {
		t.Errorf("HeadroomNow at GOMAXPROCS 2 and 6 = %d and %d; want %d and %d (RLIMIT_STACK %d)",
			two, six, osmem.Headroom+2*per, osmem.Headroom+6*per, stack.Cur)
	}
}

// dataLimitSink keeps the helper's heap growth reachable.
var dataLimitSink [][]byte

// dataLimitChild is the helper process of TestDataLimitRunsOut.
func dataLimitChild() int {
	s, err := New(WithShards(1))
	if err != nil {
		fmt.Println("New:", err)
		return 1
	}
	_, data, ok := osmem.VMHeld()
	if !ok {
		fmt.Println("no VmData in /proc/self/status")
		return 1
	}
	limit := data + 256<<20
	if err := unix.Setrlimit(unix.RLIMIT_DATA, &unix.Rlimit{Cur: limit, Max: unix.RLIM_INFINITY}); err != nil {
		fmt.Println("setrlimit:", err)
		return 1
	}
	var hs []Handle
	var refusal error
	for refusal == nil {
		h, err := Alloc[uint64](s, 1<<17) // 1 MiB
		if err != nil {
			refusal = err
			break
		}
		if err := BorrowSlice(s, h, func(v []uint64) error {
			v[0], v[len(v)-1] = uint64(len(hs)), ^uint64(len(hs))
			return nil
		}); err != nil {
			fmt.Println("Borrow:", err)
			return 1
		}
		hs = append(hs, h)
	}
	if !errors.Is(refusal, ErrOutOfMemory) || !errors.Is(refusal, unix.ENOMEM) {
		fmt.Printf("refused with %v, want ErrOutOfMemory and ENOMEM\n", refusal)
		return 1
	}
	for range 24 {
		b := make([]byte, 1<<20)
		b[0] = 1
		dataLimitSink = append(dataLimitSink, b)
	}
	runtime.GC()
	// Each goroutine holds its own thread until all four run, and ends
	// locked to it, which takes the thread with it.
	var started, wg sync.WaitGroup
	release := make(chan struct{})
	tids := make([]int, 4)
	started.Add(len(tids))
	for i := range tids {
		wg.Go(func() {
			runtime.LockOSThread()
			tids[i] = unix.Gettid()
			started.Done()
			<-release
		})
	}
	started.Wait()
	close(release)
	wg.Wait()
	if distinct := slices.Compact(slices.Sorted(slices.Values(tids))); len(distinct) != len(tids) {
		fmt.Println("the four goroutines ran on the threads", tids)
		return 1
	}
	for i, h := range hs {
		err := BorrowViewSlice(s, h, func(v []uint64) error {
			if v[0] != uint64(i) || v[len(v)-1] != ^uint64(i) {
				return fmt.Errorf("entry %d holds %d, %d", i, v[0], v[len(v)-1])
			}
			return nil
		})
		if err != nil {
			fmt.Println(err)
			return 1
		}
	}
	if err := s.Close(); err != nil {
		fmt.Println("Close:", err)
		return 1
	}
	held, _ := osmem.MapsHeld()
	fmt.Printf("ok %d MiB of entries, then %v; the heap grew by %d MiB and 4 threads ran at once after (%d mappings held)\n",
		len(hs), refusal, len(dataLimitSink), held)
	return 0
}

// skipUnlessCgo skips a test where the C library is not mapped, that is
// where this binary does not link cgo.
func skipUnlessCgo(t *testing.T) {
	t.Helper()
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skip(err)
	}
	if !strings.Contains(string(maps), "/libc.so") {
		t.Skip("the C library is not mapped: this binary does not link cgo")
	}
}

// TestMapLeavesHeadroomNow: in this binary, which links cgo, Map leaves
// HeadroomNow of RLIMIT_DATA, not Headroom alone: under a limit that
// leaves a region, its guard and alignment and Headroom room, with half
// the threads' share to spare, Map refuses it, and maps a region smaller
// by the threads' share, which leaves half of it to spare. With
// checkHeadroom on Headroom, every osmem test passed, as that package's
// binary does not link cgo.
func TestMapLeavesHeadroomNow(t *testing.T) {
	if raceBuild {
		t.Skip("the race detector's shadow memory counts against the limit")
	}
	skipUnlessCgo(t)
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_DATA, &old); err != nil {
		t.Fatal(err)
	}
	if old.Cur != unix.RLIM_INFINITY {
		t.Skip("RLIMIT_DATA is set already")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	threads := osmem.HeadroomNow() - osmem.Headroom
	guard := uint64(2*osmem.PageSize() + osmem.HugePageSize)
	n := threads + 8<<20
	_, data, ok := osmem.VMHeld()
	if !ok {
		t.Skip("no VmData in /proc/self/status")
	}
	limit := data + n + guard + osmem.Headroom + threads/2
	if err := unix.Setrlimit(unix.RLIMIT_DATA, &unix.Rlimit{Cur: limit, Max: old.Max}); err != nil {
		t.Skip("setrlimit:", err)
	}
	refused, errRefused := osmem.Map(int(n), osmem.Flags{})
	mapped, errMapped := osmem.Map(int(n-threads), osmem.Flags{})
	if err := unix.Setrlimit(unix.RLIMIT_DATA, &old); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*osmem.Region{refused, mapped} {
		if err := osmem.Unmap(r); err != nil {
			t.Error(err)
		}
	}
	if !errors.Is(errRefused, osmem.ErrHeadroom) {
		t.Errorf("Map of %d MiB leaving Headroom and half the threads' %d MiB = %v; want ErrHeadroom", n>>20, threads>>20, errRefused)
	}
	if errMapped != nil {
		t.Errorf("Map of %d MiB leaving HeadroomNow and half the threads' %d MiB = %v; want the region", (n-threads)>>20, threads>>20, errMapped)
	}
}
