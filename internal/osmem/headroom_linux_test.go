package osmem

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestHeadroom: under RLIMIT_DATA, Map refuses a region that would leave
// less than Headroom of the limit to the rest of the process, with
// ErrHeadroom and ENOMEM, though the system would map it, and maps one
// that leaves more, reading what the process holds from /proc/self/status
// or, where that cannot be read, with a probe. Without the check the first
// Map succeeded and left the process 16 MiB for its heap and threads.
func TestHeadroom(t *testing.T) {
	t.Run("status", headroom)
	t.Run("probe", func(t *testing.T) {
		read := readStatus
		readStatus = func() ([]byte, error) { return nil, os.ErrNotExist }
		defer func() { readStatus = read }()
		headroom(t)
	})
}

func headroom(t *testing.T) {
	var data int64 = -1
	status, _ := os.ReadFile("/proc/self/status")
	for line := range strings.SplitSeq(string(status), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmData:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			data = kb << 10
		}
	}
	if data < 0 {
		t.Skip("no VmData in /proc/self/status")
	}
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_DATA, &old); err != nil {
		t.Fatal(err)
	}
	if old.Cur != unix.RLIM_INFINITY {
		t.Skip("RLIMIT_DATA is set already")
	}
	// Room for a region of 1.5 headrooms and the runtime's needs
	// meanwhile, which stay far below a headroom here.
	room := int64(2 * Headroom)
	lim := unix.Rlimit{Cur: uint64(data + room), Max: old.Max}
	if err := unix.Setrlimit(unix.RLIMIT_DATA, &lim); err != nil {
		t.Skip("setrlimit:", err)
	}
	r1, err1 := Map(Headroom*3/2, Flags{})
	r2, err2 := Map(Headroom/2, Flags{})
	if err := unix.Setrlimit(unix.RLIMIT_DATA, &old); err != nil {
		t.Fatal(err)
	}
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

// TestVMHeld: VmSize and VmData as /proc/self/status gives them, and no
// answer from a status that lacks either or garbles it.
func TestVMHeld(t *testing.T) {
	read := readStatus
	defer func() { readStatus = read }()
	for _, c := range []struct {
		name, status string
		size, data   uint64
		ok           bool
	}{
		{"both", "Name:\tx\nVmSize:\t  2048 kB\nVmLck:\t0 kB\nVmData:\t  1024 kB\n", 2 << 20, 1 << 20, true},
		{"no VmData", "VmSize:\t2048 kB\n", 0, 0, false},
		{"garbled", "VmSize:\tlots kB\nVmData:\t1024 kB\n", 0, 0, false},
		{"empty", "", 0, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			readStatus = func() ([]byte, error) { return []byte(c.status), nil }
			size, data, ok := vmHeld()
			if ok != c.ok || ok && (size != c.size || data != c.data) {
				t.Fatalf("vmHeld = %d, %d, %v; want %d, %d, %v", size, data, ok, c.size, c.data, c.ok)
			}
		})
	}
	readStatus = read
	if _, _, ok := vmHeld(); !ok {
		t.Fatal("no VmSize and VmData in this process's /proc/self/status")
	}
}

// TestHeadroomSecretData: secret memory is a shared mapping, which
// RLIMIT_AS counts and RLIMIT_DATA does not, so a data limit with less
// than Headroom to spare refuses a private region but not a secret one,
// read from /proc/self/status or probed. The check counted every region
// against RLIMIT_DATA and refused the secret page with ErrHeadroom, though
// the kernel maps it without taking any of the data limit.
func TestHeadroomSecretData(t *testing.T) {
	t.Run("status", headroomSecretData)
	t.Run("probe", func(t *testing.T) {
		read := readStatus
		readStatus = func() ([]byte, error) { return nil, os.ErrNotExist }
		defer func() { readStatus = read }()
		headroomSecretData(t)
	})
}

func headroomSecretData(t *testing.T) {
	probe, err := Map(PageSize(), Flags{Secret: true})
	if err != nil {
		t.Skip("no secret memory:", err)
	}
	if err := Unmap(probe); err != nil {
		t.Fatal(err)
	}
	_, data, ok := vmHeld()
	if !ok {
		read := readStatus
		readStatus = func() ([]byte, error) { return os.ReadFile("/proc/self/status") }
		_, data, ok = vmHeld()
		readStatus = read
	}
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
	// Half a headroom left: too little for any private region, and plenty
	// for the runtime while the two Maps run.
	lim := unix.Rlimit{Cur: data + Headroom/2, Max: old.Max}
	if err := unix.Setrlimit(unix.RLIMIT_DATA, &lim); err != nil {
		t.Skip("setrlimit:", err)
	}
	private, errPrivate := Map(PageSize(), Flags{})
	secret, errSecret := Map(PageSize(), Flags{Secret: true})
	if err := unix.Setrlimit(unix.RLIMIT_DATA, &old); err != nil {
		t.Fatal(err)
	}
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
	if old.Cur != unix.RLIM_INFINITY || old.Max != unix.RLIM_INFINITY {
		t.Skip("RLIMIT_DATA is set already")
	}
	lim := unix.Rlimit{Cur: 0, Max: old.Max}
	if err := unix.Setrlimit(unix.RLIMIT_DATA, &lim); err != nil {
		t.Skip("setrlimit:", err)
	}
	r, err := Map(PageSize(), Flags{})
	if err := unix.Setrlimit(unix.RLIMIT_DATA, &old); err != nil {
		t.Fatal(err)
	}
	if err := Unmap(r); err != nil {
		t.Error(err)
	}
	if err != nil {
		t.Fatalf("Map of a page under a soft RLIMIT_DATA of 0 and no hard one = %v; want the region", err)
	}
}
