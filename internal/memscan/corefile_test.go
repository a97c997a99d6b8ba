package memscan

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/memshuffle/memshuffle/internal/memscan/coretest"
)

// writeThreadCore writes a core file built by coretest.BuildThreads into a
// temporary directory and opens it, closed at the end of the test.
func writeThreadCore(t *testing.T, segs []coretest.Segment, threads []coretest.Thread) *Core {
	t.Helper()
	path := filepath.Join(t.TempDir(), "core")
	if err := os.WriteFile(path, coretest.BuildThreads(elf.ET_CORE, segs, nil, threads), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := OpenCore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestCoreReadAt(t *testing.T) {
	t.Parallel()
	seq := func(n int, from byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = from + byte(i)
		}
		return b
	}
	// Two segments that follow each other, a gap, and a segment of which
	// the file stores only the first half.
	const a, b, c = 0x10000, 0x10100, 0x20000
	c0 := writeThreadCore(t, []coretest.Segment{
		{Vaddr: b, Data: seq(0x100, 0x80)},
		{Vaddr: a, Data: seq(0x100, 0)},
		{Vaddr: c, Data: seq(0x80, 0x40), Memsz: 0x100},
	}, nil)
	for _, tc := range []struct {
		name string
		addr uint64
		n    int
		want []byte // nil: ErrNotDumped
	}{
		{"start", a, 4, []byte{0, 1, 2, 3}},
		{"inside", a + 0x10, 2, []byte{0x10, 0x11}},
		{"across adjacent segments", b - 2, 4, []byte{0xfe, 0xff, 0x80, 0x81}},
		{"end of the stored half", c + 0x7e, 2, []byte{0xbe, 0xbf}},
		{"empty", c + 0x1000, 0, []byte{}},
		{"before every segment", a - 4, 4, nil},
		{"running into the gap", b + 0xfe, 4, nil},
		{"in the gap", 0x18000, 1, nil},
		{"into the tail not stored", c + 0x7f, 2, nil},
		{"past the end", c + 0x100, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make([]byte, tc.n)
			err := c0.ReadAt(got, tc.addr)
			switch {
			case tc.want == nil && !errors.Is(err, ErrNotDumped):
				t.Fatalf("ReadAt(%#x, %d): err %v, want ErrNotDumped", tc.addr, tc.n, err)
			case tc.want != nil && err != nil:
				t.Fatalf("ReadAt(%#x, %d): %v", tc.addr, tc.n, err)
			case tc.want != nil && !bytes.Equal(got, tc.want):
				t.Fatalf("ReadAt(%#x, %d) = %x, want %x", tc.addr, tc.n, got, tc.want)
			}
		})
	}
}

func TestCoreThreads(t *testing.T) {
	t.Parallel()
	seg := []coretest.Segment{{Vaddr: 0x10000, Data: make([]byte, 64)}}
	threads := []coretest.Thread{
		{TID: 4242, RIP: 0x401000, RSP: 0xc000012345},
		{TID: 4243, RIP: 0x7f0000001234, RSP: 0x7ffd00000008},
	}
	for _, tc := range []struct {
		name    string
		threads []coretest.Thread
		machine elf.Machine // 0: x86-64
		want    []Thread
		err     error
	}{
		{name: "two threads", threads: threads, want: []Thread{
			{TID: 4242, RIP: 0x401000, RSP: 0xc000012345},
			{TID: 4243, RIP: 0x7f0000001234, RSP: 0x7ffd00000008},
		}},
		// coretest.Build's dummy note is 37 bytes, not a prstatus.
		{name: "short note", err: ErrNotCore},
		{name: "another machine", threads: threads, machine: elf.EM_AARCH64, err: ErrCoreArch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := coretest.BuildThreads(elf.ET_CORE, seg, nil, tc.threads)
			if tc.machine != 0 {
				binary.LittleEndian.PutUint16(b[18:], uint16(tc.machine)) // e_machine
			}
			path := filepath.Join(t.TempDir(), "core")
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := OpenCore(path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, err := c.Threads()
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Threads: err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Threads = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestOpenCoreNotCore(t *testing.T) {
	t.Parallel()
	path := writeCore(t, elf.ET_EXEC, nil, nil)
	if _, err := OpenCore(path); !errors.Is(err, ErrNotCore) {
		t.Fatalf("OpenCore of an executable: err %v, want ErrNotCore", err)
	}
}

// TestCoreSignalFrame builds signal stacks holding a frame laid out as
// Linux lays one out, with threads stopped at various places, and checks
// which frames SignalFrameAt finds and which HandledBy calls in use.
func TestCoreSignalFrame(t *testing.T) {
	t.Parallel()
	const (
		stackLo   = 0xc000100000
		stackSize = 32 << 10
		goStack   = 0xc000200000 // where the interrupted code ran
		fpSize    = 2696         // a frame's FPU state with AVX-512
		rip       = 0x5f2400
	)
	for _, tc := range []struct {
		name string
		// edit changes the stack after the frame is written; rspOf
		// places the one thread from the frame's address (0: off every
		// signal stack).
		edit    func(stack []byte, frame, fx uint64)
		hitOff  uint64 // the hit, from the FPU state
		rspOf   func(frame uint64) uint64
		noFrame bool
		handled bool
	}{
		{name: "handler running below the frame", hitOff: 160,
			rspOf: func(f uint64) uint64 { return f - 0x300 }, handled: true},
		{name: "restorer about to call rt_sigreturn", hitOff: 160 + 15*16,
			rspOf: func(f uint64) uint64 { return f + 8 }, handled: true},
		{name: "left behind: the thread is back on its own stack", hitOff: 160,
			rspOf: func(uint64) uint64 { return goStack + 0x100 }},
		{name: "left behind: no thread", hitOff: 200},
		{name: "thread above the frame on the signal stack", hitOff: 160,
			rspOf: func(f uint64) uint64 { return f + 0x200 }},
		{name: "frame not at the top of its stack", hitOff: 160,
			rspOf: func(f uint64) uint64 { return f - 0x300 },
			edit: func(stack []byte, f, _ uint64) {
				// uc_stack names a larger stack, so the frame lies
				// below where the kernel would have put it.
				binary.LittleEndian.PutUint64(stack[f+40-stackLo:], stackSize+4096)
			}},
		{name: "hit past 4 KiB of FPU state", hitOff: 4096 + 64, noFrame: true},
		{name: "no magic word", hitOff: 160, noFrame: true,
			edit: func(stack []byte, _, fx uint64) { clear(stack[fx+464-stackLo:][:4]) }},
		{name: "no frame points to the FPU state", hitOff: 160, noFrame: true,
			edit: func(stack []byte, f, _ uint64) { clear(stack[f+232-stackLo:][:8]) }},
		{name: "frame outside the stack it names", hitOff: 160, noFrame: true,
			edit: func(stack []byte, f, _ uint64) {
				binary.LittleEndian.PutUint64(stack[f+24-stackLo:], f+8)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stack := make([]byte, stackSize+8192)
			frame, fx := coretest.PutSignalFrame(stack[:stackSize], stackLo, fpSize, rip, goStack+0x40)
			if tc.edit != nil {
				tc.edit(stack, frame, fx)
			}
			var threads []coretest.Thread
			if tc.rspOf != nil {
				threads = append(threads, coretest.Thread{TID: 7, RIP: 0x401000, RSP: tc.rspOf(frame)})
			}
			// A second thread, elsewhere, is never the handler.
			threads = append(threads, coretest.Thread{TID: 8, RIP: 0x401000, RSP: goStack + 0x800})
			c := writeThreadCore(t, []coretest.Segment{
				{Vaddr: stackLo, Data: stack},
				{Vaddr: goStack, Data: make([]byte, 4096)},
			}, threads)
			ts, err := c.Threads()
			if err != nil {
				t.Fatal(err)
			}
			fr, err := c.SignalFrameAt(fx + tc.hitOff)
			if tc.noFrame {
				if !errors.Is(err, ErrNoSignalFrame) {
					t.Fatalf("SignalFrameAt: %v, %v; want ErrNoSignalFrame", fr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fr.Addr != frame || fr.FPState != fx || fr.FPSize != fpSize || fr.RIP != rip || fr.RSP != goStack+0x40 {
				t.Fatalf("SignalFrameAt = %v, want the frame at %#x, FPU state %#x", fr, frame, fx)
			}
			th, handled := fr.HandledBy(ts)
			if handled != tc.handled || handled && th.TID != 7 {
				t.Fatalf("HandledBy = %+v, %v; want %v", th, handled, tc.handled)
			}
		})
	}
}
