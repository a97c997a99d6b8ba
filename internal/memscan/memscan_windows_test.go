//go:build windows

package memscan

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"testing"
	"unsafe"

	"golang.org/x/sys/windows"
)

// mapRegion commits size bytes with VirtualAlloc, off the Go heap, and
// releases it when the test ends.
func mapRegion(t testing.TB, size int) []byte {
	t.Helper()
	addr, err := windows.VirtualAlloc(0, uintptr(size), windows.MEM_RESERVE|windows.MEM_COMMIT, windows.PAGE_READWRITE)
	if err != nil {
		t.Fatal(err)
	}
	b := unsafe.Slice((*byte)(ptr(addr)), size)
	t.Cleanup(func() {
		protectRegion(t, b, windows.PAGE_READWRITE)
		clear(b)
		if err := windows.VirtualFree(addr, 0, windows.MEM_RELEASE); err != nil {
			t.Error(err)
		}
	})
	return b
}

func protectRegion(t testing.TB, b []byte, prot uint32) {
	t.Helper()
	var old uint32
	if err := windows.VirtualProtect(uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), prot, &old); err != nil {
		t.Fatal(err)
	}
}

// TestScanProcessProtections splits a region with VirtualProtect: a secret
// across a read-write and a read-only page is found, with the hit in the
// read-write region; one in a PAGE_NOACCESS page is not searched (and does
// not stop the scan), as documented.
func TestScanProcessProtections(t *testing.T) {
	region := mapRegion(t, 3*4096)
	across := region[4096-8 : 4096+8]
	hidden := region[2*4096+100 : 2*4096+132]
	pAcross := plantSecret(t, across)
	pHidden := plantSecret(t, hidden)
	protectRegion(t, region[4096:2*4096], windows.PAGE_READONLY)
	protectRegion(t, region[2*4096:], windows.PAGE_NOACCESS)

	hits, err := ScanProcessAll(os.Getpid(), []*Pattern{pAcross, pHidden})
	if err != nil {
		t.Fatal(err)
	}
	h := wantOneHit(t, hits[0], addrOf(across))
	if h.Mapping.End != addrOf(region)+4096 || h.Mapping.Perms != "rw-p" {
		t.Errorf("mapping %#x-%#x %s, want the rw-p page ending at %#x", h.Mapping.Start, h.Mapping.End, h.Mapping.Perms, addrOf(region)+4096)
	}
	if len(hits[1]) != 0 {
		t.Errorf("secret in a PAGE_NOACCESS page reported: %+v", hits[1])
	}
	ms, err := Maps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]string{
		addrOf(region):          "rw-p",
		addrOf(region) + 4096:   "r--p",
		addrOf(region) + 2*4096: "---p",
	}
	for _, m := range ms {
		if p, ok := want[m.Start]; ok {
			if m.Perms != p || m.End != m.Start+4096 {
				t.Errorf("region at %#x: %#x-%#x %s, want one page %s", m.Start, m.Start, m.End, m.Perms, p)
			}
			delete(want, m.Start)
		}
	}
	if len(want) != 0 {
		t.Errorf("regions not listed by Maps: %v", want)
	}
}

// TestMapsSelfWindows checks that Maps lists the executable's image with its
// file name, in address order.
func TestMapsSelfWindows(t *testing.T) {
	ms, err := Maps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	image := false
	for i, m := range ms {
		if i > 0 && m.Start < ms[i-1].End {
			t.Errorf("regions out of order: %#x after %#x", m.Start, ms[i-1].End)
		}
		if m.Perms == "r-xs" && m.Path != "" {
			image = true
		}
	}
	if !image {
		t.Errorf("no executable image with a file name among %d regions", len(ms))
	}
}

func TestScanProcessErrorsWindows(t *testing.T) {
	p := mustPattern(t, []byte("x"))
	tests := []struct {
		name string
		pid  int
		p    *Pattern
		want error
	}{
		{"nil pattern", os.Getpid(), nil, ErrEmptyPattern},
		{"pid 0", 0, p, ErrInvalidPID},
		{"negative pid", -1, p, ErrInvalidPID},
		// Windows process ids are multiples of 4.
		{"no such process", 0x7ffffffd, p, fs.ErrNotExist},
	}
	if big := uint64(math.MaxUint32) + 4; big <= math.MaxInt { // 64-bit int
		tests = append(tests, struct {
			name string
			pid  int
			p    *Pattern
			want error
		}{"beyond a DWORD", int(big), p, fs.ErrNotExist})
	}
	for _, tt := range tests {
		if _, err := ScanProcess(tt.pid, tt.p); !errors.Is(err, tt.want) {
			t.Errorf("%s: ScanProcess: %v, want %v", tt.name, err, tt.want)
		}
		if tt.p != nil {
			if _, err := Maps(tt.pid); !errors.Is(err, tt.want) {
				t.Errorf("%s: Maps: %v, want %v", tt.name, err, tt.want)
			}
		}
	}
}

// TestScanProcessExited scans a process that has ended but whose process
// object is still held open, as happens between its exit and its reaping.
func TestScanProcessExited(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// cmd holds a handle until Wait, so the pid stays valid after exit.
	h, err := windows.OpenProcess(windows.SYNCHRONIZE, false, uint32(cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	defer windows.CloseHandle(h)
	if ev, err := windows.WaitForSingleObject(h, 30_000); err != nil || ev != windows.WAIT_OBJECT_0 {
		t.Fatalf("waiting for the child: %v %v", ev, err)
	}
	if _, err := ScanProcess(cmd.Process.Pid, mustPattern(t, []byte("x"))); !errors.Is(err, ErrProcessExited) {
		t.Errorf("ScanProcess of an exited process: %v, want ErrProcessExited", err)
	}
	cmd.Wait()
}
