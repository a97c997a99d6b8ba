package memshuffle

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/memscan"
)

// scanSelf searches every readable mapping of this process for p.
func scanSelf(t *testing.T, p *memscan.Pattern) []memscan.Hit {
	t.Helper()
	hits, err := memscan.ScanProcess(os.Getpid(), p)
	if errors.Is(err, memscan.ErrUnsupported) {
		t.Skip("no process memory scanner on this platform")
	}
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// unguarded drops from hits, and logs, those in the registers a signal
// frame saved where the build has no signal guard (off amd64, SECURITY.md,
// "Linux, architecture by architecture"): a signal taken while cipher code
// ran saved its registers on the thread's signal stack, round keys and so
// the first two, the raw AES-256 key, among them. Under qemu-aarch64
// TestGoexitRotateKeyLogger found such copies in 3 of 4 runs, with the
// key in V8-V9 of a frame's FP/SIMD record. On amd64 the guard wipes such
// frames, so every hit counts there.
func unguarded(t *testing.T, hits []memscan.Hit) []memscan.Hit {
	t.Helper()
	if runtime.GOARCH == "amd64" {
		return hits
	}
	var kept []memscan.Hit
	for _, h := range hits {
		if memscan.InSignalFrame(h.Addr) {
			t.Logf("%#x in %s: %s, saved by a signal; no signal guard on %s", h.Addr, h.Mapping.Name(), memscan.SignalFrameOf(h.Addr), runtime.GOARCH)
			continue
		}
		kept = append(kept, h)
	}
	return kept
}

// hitList says where each hit lies, for a failure's message.
func hitList(hits []memscan.Hit) string {
	var b strings.Builder
	for i, h := range hits {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%#x in %s (%s)", h.Addr, h.Mapping.Name(), memscan.SignalFrameOf(h.Addr))
	}
	return b.String()
}

// plant returns a copy of b on the Go heap, for a scan's control to find,
// made by aesctr.Copy, which clears the registers it used. slices.Clone
// and the built-in copy go through memmove, which leaves up to 64 bytes of
// b in X0-X3, in order, where they stay until other code overwrites them;
// a signal delivered meanwhile (a preemption, a profiler's tick) saves
// them, contiguous, in its frame on the thread's signal stack, and the
// scan finds one copy more than the test made. A goroutine that spun for
// 50 ms after slices.Clone of a 32-byte heap secret left that second copy
// in 22 runs of 50, and after this copy in none of 50; a cold CI run as
// nobody at 8 MiB failed TestNewSignerRefusedKindLeavesNothing's control
// so, once. It is not inlined, so that the copy escapes to the heap:
// inlined, a copy of at most 32 bytes would be made on the caller's stack,
// which a stack copy leaves behind as well.
//
//go:noinline
func plant(b []byte) []byte {
	p := make([]byte, len(b))
	aesctr.Copy(p, b)
	return p
}

// heapBytes returns n zero bytes on the Go heap, for a secret a test builds
// and then scans for: on the stack, as escape analysis may place a small
// buffer that does not escape, the stack's growth in a call made before
// the scan (memscan.NewPattern's frame alone is over 2 KiB) leaves a copy
// in the old stack, which no wipe of the new one reaches.
//
//go:noinline
func heapBytes(n int) []byte { return make([]byte, n) }

// TestProcessMemory writes a secret into a rented entry and reads all of
// the process's memory (/proc/self/mem on Linux, ReadProcessMemory on
// Windows): the plaintext is there while rented, inside the entry only, and
// gone after Return, Shuffle and Free; the ciphertext of a moved or freed
// entry is not left behind either.
func TestProcessMemory(t *testing.T) {
	skipScanUnderRace(t)
	for _, size := range []int{48, 64 << 10} { // the block path and the pipelined path
		t.Run(map[int]string{48: "small", 64 << 10: "large"}[size], func(t *testing.T) {
			s := newTest(t, WithShards(1))
			var others []Handle
			for range 50 {
				h, _ := Alloc[byte](s, 100)
				others = append(others, h)
			}
			h, err := Alloc[byte](s, size)
			if err != nil {
				t.Fatal(err)
			}
			b, err := RentSlice[byte](s, h)
			if err != nil {
				t.Fatal(err)
			}
			// Generated in place, so the entry holds the only copy.
			if _, err := rand.Read(b); err != nil {
				t.Fatal(err)
			}
			plain, err := memscan.NewPattern(b)
			if err != nil {
				t.Fatal(err)
			}
			hits := scanSelf(t, plain)
			if len(hits) != 1 || hits[0].Addr != uint64(uintptr(unsafe.Pointer(&b[0]))) {
				t.Fatalf("while rented: %d hits %+v, want exactly the entry at %p", len(hits), hits, &b[0])
			}
			// Only Linux reports dump exclusion back to a scanner.
			if m := hits[0].Mapping; m.Path != "" || !m.DontDump && runtime.GOOS == "linux" {
				t.Fatalf("entry's mapping is %+v, want anonymous and excluded from dumps", m)
			}
			if err := s.Return(h); err != nil {
				t.Fatal(err)
			}
			if n := len(scanSelf(t, plain)); n != 0 {
				t.Fatalf("after Return: plaintext found %d times", n)
			}

			cipher, err := memscan.NewPattern(memOf(s, h))
			if err != nil {
				t.Fatal(err)
			}
			at := uint64(addrOf(s, h))
			for _, o := range others[:25] {
				s.Free(o)
			}
			if err := s.Shuffle(); err != nil {
				t.Fatal(err)
			}
			hits = scanSelf(t, cipher)
			if len(hits) != 1 || hits[0].Addr == at || hits[0].Addr != uint64(addrOf(s, h)) {
				t.Fatalf("after Shuffle: ciphertext hits %+v; want one, at the new place %#x (was %#x)", hits, addrOf(s, h), at)
			}
			if n := len(scanSelf(t, plain)); n != 0 {
				t.Fatalf("after Shuffle: plaintext found %d times", n)
			}

			s.SetShuffleOnBorrowReturn(true)
			if _, err := RentSlice[byte](s, h); err != nil {
				t.Fatal(err)
			}
			if n := len(scanSelf(t, plain)); n != 1 {
				t.Fatalf("rented again: plaintext found %d times, want 1", n)
			}
			if err := s.Return(h); err != nil {
				t.Fatal(err)
			}
			if n := len(scanSelf(t, plain)); n != 0 {
				t.Fatalf("after a moving Return: plaintext found %d times", n)
			}
			// Control: a copy on the Go heap is found too, so the scan does
			// see the heap and the zero counts above mean something.
			b, _ = RentSlice[byte](s, h)
			leak := plant(b)
			if n := len(scanSelf(t, plain)); n != 2 {
				t.Fatalf("control: plaintext in the entry and on the heap found %d times, want 2", n)
			}
			clear(leak)
			if err := s.Return(h); err != nil {
				t.Fatal(err)
			}
			cipher, _ = memscan.NewPattern(memOf(s, h))
			if err := s.Free(h); err != nil {
				t.Fatal(err)
			}
			if n := len(scanSelf(t, cipher)); n != 0 {
				t.Fatalf("after Free: ciphertext found %d times", n)
			}
			if n := len(scanSelf(t, plain)); n != 0 {
				t.Fatalf("after Free: plaintext found %d times", n)
			}
		})
	}
}
