package osmem

import (
	"errors"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestHeadroom: under RLIMIT_DATA, Map refuses a region that would leave
// less than HeadroomNow of the limit to the rest of the process, with
// ErrHeadroom and ENOMEM, though the system would map it, and maps one
// that leaves more, reading what the process holds from /proc/self/status
// or, where that cannot be read, with a probe. Without the check the first
// Map succeeded and left the process 16 MiB for its heap and threads.
func TestHeadroom(t *testing.T) { bothWays(t, headroom) }

func headroom(t *testing.T) {
	var r1, r2 *Region
	var err1, err2 error
	// Room for a region of 1.5 headrooms and the runtime's needs
	// meanwhile, which stay far below a headroom here.
	room := HeadroomNow()
	withDataLimit(t, func(data uint64) uint64 { return data + 2*room }, func() {
		r1, err1 = Map(int(room*3/2), Flags{})
		r2, err2 = Map(int(room/2), Flags{})
	})
	for _, r := range []*Region{r1, r2} {
		if err := Unmap(r); err != nil {
			t.Error(err)
		}
	}
	if !errors.Is(err1, ErrHeadroom) || !errors.Is(err1, unix.ENOMEM) || r1 != nil {
		t.Errorf("Map of 1.5 headrooms with 2 left = %v; want ErrHeadroom and ENOMEM", err1)
	}
	if err2 != nil {
		t.Errorf("Map of half a headroom with 2 left = %v; want the region", err2)
	}
}

// bothWays runs fn as Map checks the headroom where /proc/self/status can
// be read, and again where it cannot, with the probe.
func bothWays(t *testing.T, fn func(*testing.T)) {
	t.Run("status", fn)
	t.Run("probe", func(t *testing.T) {
		read := readStatus
		readStatus = func() ([]byte, error) { return nil, os.ErrNotExist }
		defer func() { readStatus = read }()
		fn(t)
	})
}

// withDataLimit runs fn with the soft RLIMIT_DATA at cur(VmData), the hard
// limit as it is, and puts the limit back. It skips where a data limit is
// set already or cannot be set, or VmData cannot be read.
func withDataLimit(t *testing.T, cur func(data uint64) uint64, fn func()) {
	t.Helper()
	_, data, ok := VMHeld()
	if !ok {
		t.Skip("no VmData in /proc/self/status")
	}
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_DATA, &old); err != nil {
		t.Fatal(err)
	}
	if old.Cur != unix.RLIM_INFINITY {
		t.Skip("RLIMIT_DATA is set already")
	}
	if err := unix.Setrlimit(unix.RLIMIT_DATA, &unix.Rlimit{Cur: cur(data), Max: old.Max}); err != nil {
		t.Skip("setrlimit:", err)
	}
	fn()
	if err := unix.Setrlimit(unix.RLIMIT_DATA, &old); err != nil {
		t.Fatal(err)
	}
}

// TestVMHeld: VmSize and VmData as /proc/self/status gives them, and no
// answer from a status that lacks either or garbles it; VmLck likewise.
func TestVMHeld(t *testing.T) {
	for _, c := range []struct {
		name, status string
		size, data   uint64
		ok           bool
	}{
		{"both", "Name:\tx\nVmSize:\t  2048 kB\nVmLck:\t0 kB\nVmData:\t  1024 kB\n", 2 << 20, 1 << 20, true},
		{"no VmData", "VmSize:\t2048 kB\n", 0, 0, false},
		{"VmSize twice, no VmData", "VmSize:\t2048 kB\nVmSize:\t4096 kB\n", 0, 0, false},
		{"garbled", "VmSize:\tlots kB\nVmData:\t1024 kB\n", 0, 0, false},
		{"empty", "", 0, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			size, data, ok := parseVMHeld([]byte(c.status))
			if ok != c.ok || ok && (size != c.size || data != c.data) {
				t.Fatalf("parseVMHeld = %d, %d, %v; want %d, %d, %v", size, data, ok, c.size, c.data, c.ok)
			}
		})
	}
	if _, _, ok := VMHeld(); !ok {
		t.Fatal("no VmSize and VmData in this process's /proc/self/status")
	}
	if v, ok := statusBytes([]byte("VmLck:\t  12 kB\nVmSize:\t2048 kB\n"), "VmLck:"); !ok || v[0] != 12<<10 {
		t.Fatalf("statusBytes read VmLck as %d, %v; want %d", v[0], ok, 12<<10)
	}
	if _, ok := VMLocked(); !ok {
		t.Fatal("no VmLck in this process's /proc/self/status")
	}
}

// TestHeadroomSecretData: secret memory is a shared mapping, which
// RLIMIT_AS counts and RLIMIT_DATA does not, so a data limit with less
// than Headroom to spare refuses a private region but not a secret one,
// read from /proc/self/status or probed. The check counted every region
// against RLIMIT_DATA and refused the secret page with ErrHeadroom, though
// the kernel maps it without taking any of the data limit.
func TestHeadroomSecretData(t *testing.T) { bothWays(t, headroomSecretData) }

func headroomSecretData(t *testing.T) {
	probe, err := Map(PageSize(), Flags{Secret: true})
	if err != nil {
		t.Skip("no secret memory:", err)
	}
	if err := Unmap(probe); err != nil {
		t.Fatal(err)
	}
	var private, secret *Region
	var errPrivate, errSecret error
	// Half a headroom left: too little for any private region, and plenty
	// for the runtime while the two Maps run.
	withDataLimit(t, func(data uint64) uint64 { return data + Headroom/2 }, func() {
		private, errPrivate = Map(PageSize(), Flags{})
		secret, errSecret = Map(PageSize(), Flags{Secret: true})
	})
	for _, r := range []*Region{private, secret} {
		if err := Unmap(r); err != nil {
			t.Error(err)
		}
	}
	if !errors.Is(errPrivate, ErrHeadroom) {
		t.Errorf("private Map with half a headroom of RLIMIT_DATA left = %v; want ErrHeadroom", errPrivate)
	}
	if errSecret != nil {
		t.Errorf("secret Map with half a headroom of RLIMIT_DATA left = %v; want the region", errSecret)
	}
}

// TestHeadroomDataSoftZero: a soft RLIMIT_DATA of 0 is no limit of 0
// bytes to the kernel, which then holds data to the hard limit instead (a
// workaround it keeps for Valgrind), so the Go runtime runs on and Map
// must map too. Reading /proc/self/status, the check took the 0 at its
// word and refused every region, and New with it.
func TestHeadroomDataSoftZero(t *testing.T) {
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_DATA, &old); err != nil {
		t.Fatal(err)
	}
	if old.Max != unix.RLIM_INFINITY {
		t.Skip("a hard RLIMIT_DATA is set")
	}
	var r *Region
	var err error
	withDataLimit(t, func(uint64) uint64 { return 0 }, func() { r, err = Map(PageSize(), Flags{}) })
	if err := Unmap(r); err != nil {
		t.Error(err)
	}
	if err != nil {
		t.Fatalf("Map of a page under a soft RLIMIT_DATA of 0 and no hard one = %v; want the region", err)
	}
}

// TestHeadroomFor: in a program that links cgo the headroom grows by a
// thread's stack per processor, and cannot wrap around however large
// RLIMIT_STACK is; HeadroomNow gives that sum, or Headroom alone without
// cgo. The root package's TestHeadroomNowCgo checks it where cgo is linked.
func TestHeadroomFor(t *testing.T) {
	for _, c := range []struct {
		procs int
		stack uint64
		want  uint64
	}{
		{0, 8 << 20, Headroom},
		{-1, 8 << 20, Headroom},
		{1, 8 << 20, Headroom + 8<<20},
		{4, 8 << 20, Headroom + 32<<20},
		{64, 2 << 20, Headroom + 128<<20},
		{1 << 20, unix.RLIM_INFINITY, Headroom + 1<<60},
		{2, 1 << 63, Headroom + 2<<40},
	} {
		if got := headroomFor(c.procs, c.stack); got != c.want {
			t.Errorf("headroomFor(%d, %d) = %d, want %d", c.procs, c.stack, got, c.want)
		}
	}
	want := uint64(Headroom)
	if iscgo {
		want = headroomFor(runtime.GOMAXPROCS(0), threadStackSize)
	}
	if got := HeadroomNow(); got != want {
		t.Errorf("HeadroomNow() = %d, want %d (cgo %v)", got, want, iscgo)
	}
}

// TestThreadStack: a thread's stack is RLIMIT_STACK as set, and 8 MiB
// where it is unlimited.
func TestThreadStack(t *testing.T) {
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_STACK, &old); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setrlimit(unix.RLIMIT_STACK, &old); err != nil {
			t.Fatal(err)
		}
	}()
	for _, c := range []struct{ cur, want uint64 }{
		{4 << 20, 4 << 20},
		{unix.RLIM_INFINITY, defaultThreadStack},
	} {
		if c.cur > old.Max {
			continue
		}
		if err := unix.Setrlimit(unix.RLIMIT_STACK, &unix.Rlimit{Cur: c.cur, Max: old.Max}); err != nil {
			t.Fatal(err)
		}
		if got := threadStack(); got != c.want {
			t.Errorf("threadStack() with RLIMIT_STACK %d = %d, want %d", c.cur, got, c.want)
		}
	}
}
