//go:build linux

package memscan

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// mapRegion maps size bytes of anonymous memory, off the Go heap, and
// unmaps it when the test ends.
func mapRegion(t testing.TB, size int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = unix.Mprotect(b, unix.PROT_READ|unix.PROT_WRITE)
		clear(b)
		if err := unix.Munmap(b); err != nil {
			t.Error(err)
		}
	})
	return b
}

// TestScanProcessSelfFlags checks that a hit carries the smaps flags of its
// mapping, and that a page made PROT_NONE after the secret was written is
// still searched.
func TestScanProcessSelfFlags(t *testing.T) {
	region := mapRegion(t, 2*4096)
	secret := region[100:124]
	p := plantSecret(t, secret)
	if err := unix.Madvise(region, unix.MADV_DONTDUMP); err != nil {
		t.Fatal(err)
	}
	locked := unix.Mlock(region) == nil // RLIMIT_MEMLOCK may say no
	if locked {
		t.Cleanup(func() { _ = unix.Munlock(region) })
	}
	h := wantOneHit(t, scanSelf(t, p), addrOf(secret))
	if !h.Mapping.DontDump || h.Mapping.Locked != locked {
		t.Errorf("mapping %+v: want DontDump, Locked=%v", h.Mapping, locked)
	}

	if err := unix.Mprotect(region, unix.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	h = wantOneHit(t, scanSelf(t, p), addrOf(secret))
	if h.Mapping.Perms != "---p" {
		t.Errorf("perms %q, want ---p", h.Mapping.Perms)
	}
	if err := unix.Mprotect(region, unix.PROT_READ|unix.PROT_WRITE); err != nil {
		t.Fatal(err)
	}
	clear(region)
	if hits := scanSelf(t, p); len(hits) != 0 {
		t.Fatalf("after wiping: %+v", hits)
	}
}

// TestScanProcessSelfAcrossMappings splits a region into two mappings with
// mprotect and plants a secret across the split.
func TestScanProcessSelfAcrossMappings(t *testing.T) {
	region := mapRegion(t, 2*4096)
	secret := region[4096-8 : 4096+8]
	p := plantSecret(t, secret)
	if err := unix.Mprotect(region[4096:], unix.PROT_READ); err != nil {
		t.Fatal(err)
	}
	h := wantOneHit(t, scanSelf(t, p), addrOf(secret))
	if h.Mapping.End != addrOf(region)+4096 || h.Mapping.Perms != "rw-p" {
		t.Errorf("mapping %#x-%#x %s, want the rw-p half ending at %#x", h.Mapping.Start, h.Mapping.End, h.Mapping.Perms, addrOf(region)+4096)
	}
}

func TestMapsSelf(t *testing.T) {
	t.Parallel()
	region := mapRegion(t, 4096)
	ms, err := Maps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var stack, ours bool
	for i, m := range ms {
		if i > 0 && m.Start < ms[i-1].End {
			t.Errorf("mappings out of order: %#x after %#x", m.Start, ms[i-1].End)
		}
		stack = stack || m.Path == "[stack]"
		ours = ours || m.contains(addrOf(region))
	}
	if !stack || !ours {
		t.Errorf("maps of self: [stack] found %v, test region found %v", stack, ours)
	}
}

func TestScanProcessErrors(t *testing.T) {
	t.Parallel()
	p := mustPattern(t, []byte("x"))
	tests := []struct {
		name string
		pid  int
		p    *Pattern
		want error
	}{
		{"nil pattern", os.Getpid(), nil, ErrEmptyPattern},
		{"zero pattern", os.Getpid(), &Pattern{}, ErrEmptyPattern},
		{"pid 0", 0, p, ErrInvalidPID},
		{"negative pid", -1, p, ErrInvalidPID},
		{"no such process", 1<<22 + 1, p, fs.ErrNotExist}, // above the largest pid_max
	}
	for _, tt := range tests {
		if _, err := ScanProcess(tt.pid, tt.p); !errors.Is(err, tt.want) {
			t.Errorf("%s: ScanProcess: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := Maps(-1); !errors.Is(err, ErrInvalidPID) {
		t.Errorf("Maps(-1): %v, want ErrInvalidPID", err)
	}
}

// TestScanProcessChild scans another process: the test binary re-run as a
// helper that decodes a secret into its own mmap'd memory, reports the
// address and waits.
func TestScanProcessChild(t *testing.T) {
	if os.Getenv("MEMSCAN_HELPER") != "" {
		t.Skip("helper")
	}
	t.Parallel()
	// The parent needs the plaintext once, for the child's environment
	// (hex, so not the raw bytes) and for the Pattern: keep it off-heap.
	mine := mapRegion(t, 4096)
	secret := mine[:24]
	p := plantSecret(t, secret)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "MEMSCAN_HELPER="+hex.EncodeToString(secret))
	clear(mine)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	addr, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "addr ")), 0, 64)
	if err != nil {
		t.Fatalf("helper said %q: %v", line, err)
	}

	hits, err := ScanProcess(cmd.Process.Pid, p)
	if err != nil {
		t.Fatalf("ScanProcess(child): %v", err)
	}
	wantOneHit(t, hits, addr)

	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	if _, err := ScanProcess(cmd.Process.Pid, p); err == nil {
		t.Fatal("ScanProcess of a reaped process succeeded")
	}
}

// TestHelperProcess is the child of TestScanProcessChild.
func TestHelperProcess(t *testing.T) {
	h := os.Getenv("MEMSCAN_HELPER")
	if h == "" {
		t.Skip("run by TestScanProcessChild")
	}
	region, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	if _, err := hex.Decode(region, []byte(h)); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Printf("addr %#x\n", addrOf(region))
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
	os.Exit(0)
}

// BenchmarkScanProcessSelf measures a scan of the benchmark process with a
// 64 MiB populated region in it; bytes are those of the region alone, so
// the figure understates the real rate by the rest of the process.
func BenchmarkScanProcessSelf(b *testing.B) {
	region := mapRegion(b, 64<<20)
	rand.Read(region)
	p := mustPattern(b, []byte("0123456789abcdef"))
	b.SetBytes(int64(len(region)))
	for b.Loop() {
		if _, err := ScanProcess(os.Getpid(), p); err != nil {
			b.Fatal(err)
		}
	}
}
