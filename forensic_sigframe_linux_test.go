package memshuffle

import (
	"bufio"
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/memshuffle/memshuffle/internal/memscan"
	"github.com/memshuffle/memshuffle/internal/memscan/coretest"
)

// The frame of a guarded routine of internal/aesctr (guard_amd64.h), as
// offsets from the hardware stack pointer: each routine's TEXT line gives
// it a frame ($56), so the assembler's prologue pushes BP and subtracts
// 56, and n(SP) in the body is rsp+n.
const (
	asmFrameCanary    = 8  // frameCanary: FPU state of the default frame size
	asmFrameCanaryMax = 16 // frameCanaryMax: that of the largest frame size
	asmFrameGuard     = 48 // frameGuard: the guard in effect
	asmGuardCanary    = 3  // guardCanary
)

// errNoGuardWindow is returned by loadAesctrAsm when the binary or the
// sources do not show where the guarded routines plant and check their
// canaries.
var errNoGuardWindow = errors.New("no guard window of internal/aesctr's assembly found")

// aesctrAsm knows, from a Go binary's line table and internal/aesctr's
// assembly sources, where each guarded routine holds secrets under its
// canaries: after the line of GUARDENTER, which plants them, up to the
// line of GUARDEXIT, which checks them and wipes the signal stack. An
// instruction of GUARDENTER's own line may come before the canaries are
// planted, so it is left out.
type aesctrAsm struct {
	tab     *gosym.Table
	windows map[string]guardWindow // by function name

	// The binary, and the address its line table gives the start of its
	// file: a position-independent build (-buildmode=pie) runs at another
	// address in every process, bias bytes further on (see at).
	exe       os.FileInfo
	pie       bool
	firstLoad uint64
	bias      uint64
}

// guardWindow is the lines of one routine's source between its guards.
type guardWindow struct {
	file        string // base name of the .s file
	enter, exit int    // the lines of GUARDENTER and GUARDEXIT
}

// aesctrPkg is the prefix of internal/aesctr's symbol names.
const aesctrPkg = "github.com/memshuffle/memshuffle/internal/aesctr."

// loadAesctrAsm reads the line table of the binary at path, a fixed-address
// or a position-independent executable, and the guarded routines of the .s
// files in srcDir. The routines and their guards exist only in amd64's
// assembly: on any other architecture it returns an error, which its
// callers take as a reason to skip.
func loadAesctrAsm(path, srcDir string) (*aesctrAsm, error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("internal/aesctr's guarded assembly is amd64's, and this is %s", runtime.GOARCH)
	}
	ef, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer ef.Close()
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		return nil, fmt.Errorf("%s is %v, not an executable", path, ef.Type)
	}
	exe, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	firstLoad, found := uint64(0), false
	for _, pr := range ef.Progs {
		if pr.Type == elf.PT_LOAD && pr.Off == 0 {
			firstLoad, found = pr.Vaddr&^0xfff, true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("%s: no PT_LOAD segment starts the file", path)
	}
	pcln, text := ef.Section(".gopclntab"), ef.Section(".text")
	if pcln == nil || text == nil {
		return nil, fmt.Errorf("%s: no .gopclntab or .text", path)
	}
	data, err := pcln.Data()
	if err != nil {
		return nil, err
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		return nil, err
	}
	a := &aesctrAsm{tab: tab, windows: map[string]guardWindow{}, exe: exe, pie: ef.Type == elf.ET_DYN, firstLoad: firstLoad}
	srcs, err := filepath.Glob(filepath.Join(srcDir, "*.s"))
	if err != nil {
		return nil, err
	}
	for _, src := range srcs {
		if err := a.readWindows(src); err != nil {
			return nil, err
		}
	}
	if len(a.windows) == 0 {
		return nil, fmt.Errorf("%w in %s", errNoGuardWindow, srcDir)
	}
	return a, nil
}

// readWindows notes the GUARDENTER and GUARDEXIT lines of each routine of
// the assembly file src.
func (a *aesctrAsm) readWindows(src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var fn string
	var w guardWindow
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "TEXT ·"):
			fn, _, _ = strings.Cut(strings.TrimPrefix(line, "TEXT ·"), "(SB)")
			w = guardWindow{file: filepath.Base(src)}
		case strings.HasPrefix(line, "GUARDENTER("):
			w.enter = n
		case strings.HasPrefix(line, "GUARDEXIT(") && fn != "" && w.enter != 0:
			w.exit = n
			a.windows[aesctrPkg+fn] = w
		}
	}
	return sc.Err()
}

// at returns a for the process whose mappings are maps: its addresses are
// the line table's moved by where that process loaded the binary (the
// mapping of the binary's first page, in the core's NT_FILE note). With no
// such mapping, a fixed-address executable is where its line table says,
// and a position-independent one cannot be placed: an error.
func (a *aesctrAsm) at(maps []memscan.Mapping) (*aesctrAsm, error) {
	for _, m := range maps {
		if m.Offset != 0 || m.Path == "" || m.Start < a.firstLoad {
			continue
		}
		if fi, err := os.Stat(m.Path); err == nil && os.SameFile(fi, a.exe) {
			b := *a
			b.bias = m.Start - a.firstLoad
			return &b, nil
		}
	}
	if a.pie {
		return nil, fmt.Errorf("the core maps no page of %s at offset 0: a position-independent binary cannot be placed", a.exe.Name())
	}
	return a, nil
}

// funcAt returns the name of the function holding pc, or "".
func (a *aesctrAsm) funcAt(pc uint64) string {
	pc -= a.bias
	if fn := a.tab.PCToFunc(pc); fn != nil {
		return fn.Name
	}
	return ""
}

// inWindow reports whether pc is an instruction of a guarded routine
// between its canaries and its wipe, and names the routine.
func (a *aesctrAsm) inWindow(pc uint64) (string, bool) {
	file, line, fn := a.tab.PCToLine(pc - a.bias)
	if fn == nil {
		return "", false
	}
	w, ok := a.windows[fn.Name]
	return fn.Name, ok && filepath.Base(file) == w.file && w.enter < line && line <= w.exit
}

// openCoreThreads opens the core at path, for the caller to close, with
// the threads and mappings classifyHit and aesctrAsm.at read.
func openCoreThreads(t *testing.T, path string) (*memscan.Core, []memscan.Thread, []memscan.Mapping) {
	t.Helper()
	c, err := memscan.OpenCore(path)
	if err != nil {
		t.Fatal(err)
	}
	threads, err := c.Threads()
	if err == nil {
		var maps []memscan.Mapping
		if maps, err = memscan.CoreMaps(path); err == nil {
			return c, threads, maps
		}
	}
	c.Close()
	t.Fatal(err)
	return nil, nil, nil
}

// openSyntheticCore writes a core of segs, the mapped files and threads,
// and opens it as openCoreThreads does, for the caller to close.
func openSyntheticCore(t *testing.T, segs []coretest.Segment, files []coretest.File, threads []coretest.Thread) (*memscan.Core, []memscan.Thread, []memscan.Mapping) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "core")
	if err := os.WriteFile(path, coretest.BuildThreads(elf.ET_CORE, segs, files, threads), 0o600); err != nil {
		t.Fatal(err)
	}
	return openCoreThreads(t, path)
}

// frameVerdict is what classifyHit found about a hit in a core.
type frameVerdict struct {
	frame memscan.SignalFrame
	err   error // why the hit is in no signal frame
	// handler, when handling, is the thread that was running the signal's
	// handler on the frame's signal stack when the dump was taken.
	handler  memscan.Thread
	handling bool
	// returned, when inWindow, is the thread that had returned from the
	// signal into a guarded routine of internal/aesctr which had not yet
	// checked the canary the frame overwrote: fn.
	returned memscan.Thread
	inWindow bool
	fn       string
	// interrupted is the function the signal interrupted, and guarded
	// whether that was a guarded routine of internal/aesctr between its
	// canaries and its wipe: the only code whose frames the guard lets
	// stand for a while.
	interrupted string
	guarded     bool
}

// inFlight reports whether the hit lay in the frame of a signal still being
// handled when the dump was taken: internal/aesctr's canary guard wipes
// such a frame only at the end of the call the signal interrupted, so a
// dump taken in between holds it, and says nothing of what the frame would
// have become. Any other hit outlived the call that made it.
func (v frameVerdict) inFlight() bool { return v.err == nil && v.guarded && (v.handling || v.inWindow) }

func (v frameVerdict) String() string {
	switch {
	case v.err != nil:
		return v.err.Error()
	case !v.guarded:
		return fmt.Sprintf("%v, which interrupted %q, not internal/aesctr's guarded assembly", v.frame, v.interrupted)
	case v.handling:
		return fmt.Sprintf("in flight: %v, thread %d handling it (rsp %#x)", v.frame, v.handler.TID, v.handler.RSP)
	case v.inWindow:
		return fmt.Sprintf("in flight: %v, thread %d back in %s before its wipe (rip %#x)", v.frame, v.returned.TID, v.fn, v.returned.RIP)
	}
	return fmt.Sprintf("left behind: %v, no thread handling it or in the call it interrupted", v.frame)
}

// classifyHit says whether the hit at addr in core c lay in the FPU state
// of a signal frame that was in flight when the dump was taken: either a
// thread was running on that frame's signal stack, handling it
// (memscan.SignalFrame.HandledBy), or a thread had returned from it into
// the guarded routine of internal/aesctr it interrupted, which had planted
// a canary at that very FPU state and not yet reached GUARDEXIT's check
// and wipe, and whose stack pointer is the one the frame saved (the body
// of a routine does not move it). A thread stopped on GUARDENTER's own
// line does not count: it may not have planted its canaries yet, and a
// frame it finds then was left by an earlier call. Either way the signal
// must have interrupted a guarded routine between its guards: a frame that
// caught secrets in the registers of any other code is no part of the
// guard's window.
func classifyHit(c *memscan.Core, threads []memscan.Thread, asm *aesctrAsm, addr uint64) frameVerdict {
	var v frameVerdict
	if v.frame, v.err = c.SignalFrameAt(addr); v.err != nil {
		return v
	}
	v.interrupted = asm.funcAt(v.frame.RIP)
	if _, v.guarded = asm.inWindow(v.frame.RIP); !v.guarded {
		return v
	}
	if v.handler, v.handling = v.frame.HandledBy(threads); v.handling {
		return v
	}
	for _, t := range threads {
		fn, ok := asm.inWindow(t.RIP)
		if !ok || t.RSP != v.frame.RSP {
			continue
		}
		var fr [asmFrameGuard + 1]byte
		if c.ReadAt(fr[:], t.RSP) != nil || fr[asmFrameGuard] != asmGuardCanary {
			continue
		}
		le := binary.LittleEndian
		if le.Uint64(fr[asmFrameCanary:]) == v.frame.FPState || le.Uint64(fr[asmFrameCanaryMax:]) == v.frame.FPState {
			v.returned, v.inWindow, v.fn = t, true, fn
			return v
		}
	}
	return v
}

// TestClassifyHit runs classifyHit on synthetic cores: a signal stack with
// a frame laid out as Linux lays one out, and a goroutine stack with the
// frame of internal/aesctr's xorKeyStreamAsm, with the threads stopped at
// the instructions of this very binary that each case names, with the
// binary where its line table puts it or moved as a position-independent
// build is. Only a frame whose handler runs, or whose interrupted call has
// not reached its wipe, may pass; one left behind must not, and neither
// may any when the core does not say where a moved binary was.
func TestClassifyHit(t *testing.T) {
	asm, err := loadAesctrAsm(os.Args[0], filepath.Join("internal", "aesctr"))
	if err != nil {
		t.Skipf("cannot read the guarded assembly's lines from the test binary: %v", err)
	}
	const fn = aesctrPkg + "xorKeyStreamAsm"
	f := asm.tab.LookupFunc(fn)
	w, ok := asm.windows[fn]
	if f == nil || !ok {
		t.Fatalf("%s or its guard window not found", fn)
	}
	file, _, _ := asm.tab.PCToLine(f.Entry)
	pcOfLine := func(from, to int) uint64 {
		for l := from; l <= to; l++ {
			if pc, _, err := asm.tab.LineToPC(file, l); err == nil && pc >= f.Entry && pc < f.End {
				return pc
			}
		}
		t.Fatalf("no instruction of %s on lines %d-%d", fn, from, to)
		return 0
	}
	inBody := pcOfLine(w.enter+1, w.exit)         // secrets loaded, canaries planted
	atExit := pcOfLine(w.exit, w.exit)            // checking the canaries
	atEnter := pcOfLine(w.enter, w.enter)         // maybe before the canaries
	elsewhere := asm.tab.LookupFunc("runtime.GC") // Go code, off the assembly
	if elsewhere == nil {
		t.Fatal("runtime.GC not in the line table")
	}

	const (
		sigStack = 0xc000100000
		sigSize  = 32 << 10
		goStack  = 0xc000200000
		asmRSP   = goStack + 0x800 // the routine's stack pointer
		fpSize   = 2696
	)
	type thread struct {
		rip uint64
		rsp func(frame uint64) uint64
	}
	at := func(v uint64) func(uint64) uint64 { return func(uint64) uint64 { return v } }
	cases := []struct {
		name     string
		thread   thread
		frameRIP uint64 // where the signal interrupted; 0: inBody
		canary   int    // which canary slot holds the frame's FPU state: 0 none, 1, 2
		guard    byte   // the routine's frameGuard
		frameRSP uint64
		want     bool
	}{
		{"handler on the signal stack", thread{elsewhere.Entry, func(f uint64) uint64 { return f - 0x400 }}, 0, 0, 0, asmRSP, true},
		{"handler on the signal stack, signal from Go code", thread{elsewhere.Entry, func(f uint64) uint64 { return f - 0x400 }}, elsewhere.Entry, 0, 0, asmRSP, false},
		{"handler on the signal stack, signal before the canaries", thread{elsewhere.Entry, func(f uint64) uint64 { return f - 0x400 }}, atEnter, 0, 0, asmRSP, false},
		{"back in the routine, default canary", thread{inBody, at(asmRSP)}, 0, 1, asmGuardCanary, asmRSP, true},
		{"back in the routine, AMX canary", thread{inBody, at(asmRSP)}, 0, 2, asmGuardCanary, asmRSP, true},
		{"in the routine's exit check", thread{atExit, at(asmRSP)}, 0, 1, asmGuardCanary, asmRSP, true},
		{"left behind: thread in Go code", thread{elsewhere.Entry, at(asmRSP)}, 0, 1, asmGuardCanary, asmRSP, false},
		{"left behind: routine entered, canaries maybe not planted", thread{atEnter, at(asmRSP)}, 0, 1, asmGuardCanary, asmRSP, false},
		{"left behind: canary elsewhere", thread{inBody, at(asmRSP)}, 0, 0, asmGuardCanary, asmRSP, false},
		{"left behind: guard not canary", thread{inBody, at(asmRSP)}, 0, 1, 2, asmRSP, false},
		{"left behind: frame from another call's stack", thread{inBody, at(asmRSP)}, 0, 1, asmGuardCanary, asmRSP + 0x100, false},
		{"left behind: thread above the frame", thread{elsewhere.Entry, func(f uint64) uint64 { return f + 0x100 }}, 0, 0, 0, asmRSP, false},
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Where the dumped process had the binary: where its line table says
	// (a fixed-address executable), or moved, as every process that runs
	// a position-independent build has it, with the core's NT_FILE note
	// saying where (told) or not. Moved and not told, no instruction
	// address can be placed, so no hit may pass.
	for _, load := range []struct {
		name string
		bias uint64
		told bool
	}{{"fixed", 0, false}, {"moved", 0x7f3a_0000_0000, true}, {"moved-untold", 0x7f3a_0000_0000, false}} {
		if load.bias == 0 && asm.pie {
			continue // a position-independent test binary has no fixed place
		}
		for _, tc := range cases {
			t.Run(load.name+"/"+tc.name, func(t *testing.T) {
				want := tc.want && (load.bias == 0 || load.told)
				sig := make([]byte, sigSize)
				rip := tc.frameRIP
				if rip == 0 {
					rip = inBody
				}
				rip += load.bias
				frame, fx := coretest.PutSignalFrame(sig, sigStack, fpSize, rip, tc.frameRSP)
				stack := make([]byte, 4096)
				le := binary.LittleEndian
				le.PutUint64(stack[asmRSP-goStack+asmFrameCanary:], fx-4096)
				le.PutUint64(stack[asmRSP-goStack+asmFrameCanaryMax:], fx-8192)
				if tc.canary == 1 {
					le.PutUint64(stack[asmRSP-goStack+asmFrameCanary:], fx)
				} else if tc.canary == 2 {
					le.PutUint64(stack[asmRSP-goStack+asmFrameCanaryMax:], fx)
				}
				stack[asmRSP-goStack+asmFrameGuard] = tc.guard
				segs := []coretest.Segment{
					{Vaddr: sigStack, Data: sig},
					{Vaddr: goStack, Data: stack},
				}
				var files []coretest.File
				if load.told {
					text := asm.firstLoad + load.bias
					segs = append(segs, coretest.Segment{Vaddr: text, Data: make([]byte, 4096)})
					files = append(files, coretest.File{Start: text, End: text + 4096, Name: exe})
				}
				c, threads, maps := openSyntheticCore(t, segs, files, []coretest.Thread{
					{TID: 1, RIP: elsewhere.Entry + load.bias, RSP: goStack + 0xf00},
					{TID: 2, RIP: tc.thread.rip + load.bias, RSP: tc.thread.rsp(frame)},
				})
				defer c.Close()
				placed, err := asm.at(maps)
				if err != nil {
					if load.told || !asm.pie {
						t.Fatalf("placing the binary: %v", err)
					}
					return // nothing to classify with: the test's own answer
				}
				if placed.bias != load.bias && load.told {
					t.Fatalf("binary placed %#x on, want %#x", placed.bias, load.bias)
				}
				asm := placed
				v := classifyHit(c, threads, asm, fx+160+16*3)
				if v.err != nil {
					t.Fatalf("no frame found: %v", v.err)
				}
				if v.inFlight() != want {
					t.Fatalf("in flight = %v, want %v: %s", v.inFlight(), want, v)
				}
				if v.frame.RIP != rip {
					t.Fatalf("interrupted at %#x, want %#x", v.frame.RIP, rip)
				}
			})
		}
	}
}
