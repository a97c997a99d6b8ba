//go:build linux

package main

import (
	"bytes"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/memscan"
	"github.com/memshuffle/memshuffle/internal/memscan/coretest"
	"golang.org/x/sys/unix"
)

// scanResult is what one runScan call produced.
type scanResult struct {
	code           int
	stdout, stderr string
}

func runScanT(t *testing.T, stdin io.Reader, args ...string) scanResult {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runScan(args, stdin, &out, &errOut)
	return scanResult{code, out.String(), errOut.String()}
}

// scanTestRegion maps size bytes off the Go heap for the test's secrets.
func scanTestRegion(t *testing.T, size int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		clear(b)
		if err := unix.Munmap(b); err != nil {
			t.Error(err)
		}
	})
	return b
}

// scanTestSecret fills dst with a random secret written byte by byte from
// two random shares, so its plaintext exists only in dst, and returns the
// shares for handing the secret on through scanTestSecretReader.
func scanTestSecret(dst []byte) (a, b []byte) {
	a, b = make([]byte, len(dst)), make([]byte, len(dst))
	rand.Read(a)
	rand.Read(b)
	for i := range dst {
		dst[i] = a[i] ^ b[i]
	}
	return a, b
}

// scanTestSecretReader yields a XOR b, a few bytes per Read, writing the
// plaintext only into the reader's caller's buffer.
type scanTestSecretReader struct{ a, b []byte }

func (r *scanTestSecretReader) Read(p []byte) (int, error) {
	if len(r.a) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.a), 7)
	for i := range n {
		p[i] = r.a[i] ^ r.b[i]
	}
	r.a, r.b = r.a[n:], r.b[n:]
	return n, nil
}

func scanTestAddr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }

// TestRunScanSelf plants a secret in this process and finds it with each
// way of passing the pattern, then wipes it and finds nothing.
func TestRunScanSelf(t *testing.T) {
	region := scanTestRegion(t, 2*4096)
	secret := region[4000 : 4000+24]
	a, b := scanTestSecret(secret)
	pid := fmt.Sprint(os.Getpid())

	patFile := filepath.Join(t.TempDir(), "pattern")
	f, err := os.Create(patFile)
	if err != nil {
		t.Fatal(err)
	}
	// write(2) straight from the region: no heap copy on the way.
	if _, err := f.Write(secret); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	hexPat := hex.EncodeToString(secret) // hex text is not the raw bytes

	ways := []struct {
		name  string
		stdin func() io.Reader
		args  []string
	}{
		{"stdin", func() io.Reader { return &scanTestSecretReader{a, b} }, []string{"-stdin"}},
		{"file", nil, []string{"-file", patFile}},
		{"hex", nil, []string{"-hex", hexPat}},
	}
	// The offset printed after the address counts from the start of the
	// mapping, which the kernel may have merged with a neighbouring
	// anonymous one: only the address is checked.
	want := fmt.Sprintf("%#x +", scanTestAddr(secret))
	for _, w := range ways {
		var in io.Reader
		if w.stdin != nil {
			in = w.stdin()
		}
		r := runScanT(t, in, append([]string{"-pid", pid}, w.args...)...)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if r.code != 1 || len(lines) != 2 || !strings.HasPrefix(lines[0], want) ||
			!strings.Contains(lines[0], " rw-p anon") || !strings.HasPrefix(lines[1], "1 hits in ") {
			t.Fatalf("%s: exit %d, stdout:\n%s\nstderr:\n%s\nwant one hit starting %q", w.name, r.code, r.stdout, r.stderr, want)
		}
	}

	clear(region)
	r := runScanT(t, &scanTestSecretReader{a, b}, "-pid", pid, "-stdin")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "0 hits in ") {
		t.Fatalf("after wiping: exit %d, stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}

func TestRunScanUsage(t *testing.T) {
	t.Parallel()
	core := filepath.Join(t.TempDir(), "core")
	tests := []struct {
		name  string
		args  []string
		stdin string
	}{
		{"nothing", nil, ""},
		{"no target", []string{"-hex", "00"}, ""},
		{"no pattern", []string{"-pid", "1"}, ""},
		{"pid and core", []string{"-pid", "1", "-core", core, "-hex", "00"}, ""},
		{"two patterns", []string{"-pid", "1", "-hex", "00", "-stdin"}, "x"},
		{"three patterns", []string{"-pid", "1", "-hex", "00", "-file", core, "-stdin"}, "x"},
		{"stdin=false", []string{"-pid", "1", "-stdin=false"}, "x"},
		{"pid zero", []string{"-pid", "0", "-hex", "00"}, ""},
		{"pid negative", []string{"-pid", "-3", "-hex", "00"}, ""},
		{"pid not a number", []string{"-pid", "one", "-hex", "00"}, ""},
		{"empty core name", []string{"-core", "", "-hex", "00"}, ""},
		{"unknown flag", []string{"-pid", "1", "-hex", "00", "-v"}, ""},
		{"extra argument", []string{"-pid", "1", "-hex", "00", "more"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runScanT(t, strings.NewReader(tt.stdin), tt.args...)
			if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, "Usage: memshuffle scan") {
				t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 and the usage on stderr", r.code, r.stdout, r.stderr)
			}
		})
	}

	r := runScanT(t, nil, "-h")
	if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "Usage: memshuffle scan") || !strings.Contains(r.stdout, "-stdin") {
		t.Fatalf("-h: exit %d, stdout:\n%s\nstderr:\n%s\nwant the usage on stdout", r.code, r.stdout, r.stderr)
	}
}

func TestRunScanRuntimeErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notCore := filepath.Join(dir, "not-core")
	if err := os.WriteFile(notCore, []byte("plain text"), 0o600); err != nil {
		t.Fatal(err)
	}
	self := fmt.Sprint(os.Getpid())
	tests := []struct {
		name  string
		args  []string
		stdin io.Reader
		inErr string
	}{
		{"bad hex", []string{"-pid", self, "-hex", "zz"}, nil, "invalid byte"},
		{"odd hex", []string{"-pid", self, "-hex", "abc"}, nil, "odd number of hex digits"},
		{"empty hex", []string{"-pid", self, "-hex", ""}, nil, "empty pattern"},
		{"missing pattern file", []string{"-pid", self, "-file", filepath.Join(dir, "nope")}, nil, "no such file"},
		{"empty stdin", []string{"-pid", self, "-stdin"}, strings.NewReader(""), "empty pattern"},
		{"nil stdin", []string{"-pid", self, "-stdin"}, nil, "no standard input"},
		{"pattern too long", []string{"-pid", self, "-stdin"}, bytes.NewReader(make([]byte, memscan.MaxPatternLen+1)), "longer than 65536 bytes"},
		{"no such process", []string{"-pid", "4194305", "-hex", "00"}, nil, "no such file"},
		{"missing core", []string{"-core", filepath.Join(dir, "nope"), "-hex", "00"}, nil, "no such file"},
		{"not a core", []string{"-core", notCore, "-hex", "00"}, nil, "not an ELF core"},
		{"a directory for a core", []string{"-core", dir, "-hex", "00"}, nil, "is a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runScanT(t, tt.stdin, tt.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tt.inErr) || strings.Contains(r.stderr, "Usage:") {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit 2 and an error containing %q, without the usage", r.code, r.stderr, tt.inErr)
			}
		})
	}
}

// scanTestCore writes a little-endian ELF64 core file with one NT_FILE
// note naming the first segment after /usr/bin/victim, and one PT_LOAD
// per entry of segs, mapped at consecutive vaddrs from 0x400000 with a gap
// of a page between them.
func scanTestCore(t *testing.T, segs ...[]byte) string {
	t.Helper()
	var cs []coretest.Segment
	vaddr := uint64(0x400000)
	for _, s := range segs {
		cs = append(cs, coretest.Segment{Vaddr: vaddr, Flags: elf.PF_R | elf.PF_W, Data: s})
		vaddr += uint64(len(s)) + 4096
	}
	files := []coretest.File{{Start: 0x400000, End: 0x400000 + uint64(len(segs[0])), Pgoff: 3, Name: "/usr/bin/victim"}}
	path := filepath.Join(t.TempDir(), "core")
	if err := os.WriteFile(path, coretest.Build(elf.ET_CORE, cs, files), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunScanCore(t *testing.T) {
	t.Parallel()
	pat := []byte("api-key-in-a-core-dump")
	first, second := make([]byte, 0x2000), make([]byte, 0x1000)
	copy(first[0x1000:], pat)
	copy(second[0x1000-len(pat):], pat)
	core := scanTestCore(t, first, second)

	r := runScanT(t, nil, "-core", core, "-hex", hex.EncodeToString(pat))
	want := "0x401000 +0x1000 400000-402000 rw-p /usr/bin/victim\n" +
		"0x403fea +0xfea 403000-404000 rw-p anon\n" +
		"2 hits in 2 mappings scanned\n"
	if r.code != 1 || r.stdout != want {
		t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit 1 and:\n%s", r.code, r.stdout, r.stderr, want)
	}

	r = runScanT(t, strings.NewReader("not in there"), "-core", core, "-stdin")
	if r.code != 0 || r.stdout != "0 hits in 2 mappings scanned\n" {
		t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit 0 and no hits", r.code, r.stdout, r.stderr)
	}
}

func TestScanHitLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		h    memscan.Hit
		want string
	}{
		{memscan.Hit{Addr: 0x1010, Mapping: memscan.Mapping{Start: 0x1000, End: 0x2000, Perms: "rw-p"}},
			"0x1010 +0x10 1000-2000 rw-p anon"},
		{memscan.Hit{Addr: 0x7f00, Mapping: memscan.Mapping{Start: 0x7000, End: 0x9000, Perms: "r--s", Path: "[heap]", Locked: true, DontDump: true}},
			"0x7f00 +0xf00 7000-9000 r--s [heap] locked dontdump"},
		{memscan.Hit{Addr: 0x5000, Mapping: memscan.Mapping{Start: 0x5000, End: 0x6000, Perms: "---p", Path: "/a b", DontDump: true}},
			"0x5000 +0x0 5000-6000 ---p /a b dontdump"},
	}
	for _, tt := range tests {
		if got := scanHitLine(tt.h); got != tt.want {
			t.Errorf("scanHitLine = %q, want %q", got, tt.want)
		}
	}
}
