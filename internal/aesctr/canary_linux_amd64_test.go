package aesctr

import (
	"bytes"
	"crypto/rand"
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/cpu"
	"golang.org/x/sys/unix"
)

// requireCanary fails the test where the canaries should work (a checked Go
// release on a CPU with XSAVE) but failed their start-up check, so that
// losing the fast guard does not go unnoticed, and skips it elsewhere,
// unless MEMSHUFFLE_EXPECT_CANARY=1 says they must work on this machine
// (.ci/run sets it): a Go release whose layout is not checked, or a CPU
// the guard cannot use, then fails the test too.
func requireCanary(t testing.TB) {
	t.Helper()
	expect := os.Getenv("MEMSHUFFLE_EXPECT_CANARY") == "1"
	if expect && !Supported() {
		t.Fatal("MEMSHUFFLE_EXPECT_CANARY=1, but there is no AES-NI/SSE4.1 assembly on this machine")
	}
	requireSupported(t)
	if !layoutKnown || !cpu.X86.HasOSXSAVE {
		if expect {
			t.Fatalf("MEMSHUFFLE_EXPECT_CANARY=1, but the canaries are not available (runtime layout known for this Go release: %v, XSAVE: %v)", layoutKnown, cpu.X86.HasOSXSAVE)
		}
		t.Skip("canaries not available: runtime layout unchecked for this Go release, or no XSAVE")
	}
	if !canaryReady() {
		t.Fatal("the canaries failed their start-up check")
	}
}

// TestRuntimeLayout checks the offsets of layout_linux_amd64.go against the debug
// information the compiler writes for the runtime's g and m: a Go release
// that moves a field fails here, not only at start-up (where the guard
// would fall back silently). go test links its binaries without debug
// information, so the test then builds an empty program with the same
// toolchain and reads that.
func TestRuntimeLayout(t *testing.T) {
	if !layoutKnown {
		t.Skip("no runtime offsets for this Go release")
	}
	d := runtimeDWARF(t)
	want := map[string]int64{
		"runtime.g.m":        offGM,
		"runtime.stack.lo":   offGStackLo,
		"runtime.stack.hi":   offGStackHi,
		"runtime.m.procid":   offMProcid,
		"runtime.m.gsignal":  offMGsignal,
		"runtime.m.curg":     offMCurg,
		"runtime.m.id":       offMID,
		"runtime.m.ncgocall": offMNcgocall,
		"runtime.m.ncgo":     offMNcgo,

		"runtime.m.newSigstack": offMNewSigstack,
		"runtime.m.isextra":     offMIsextra,
	}
	got := map[string]int64{}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e == nil {
			break
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		if e.Tag != dwarf.TagStructType || (name != "runtime.g" && name != "runtime.m" && name != "runtime.stack") {
			continue
		}
		for {
			c, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if c == nil || c.Tag == 0 {
				break
			}
			field, _ := c.Val(dwarf.AttrName).(string)
			if off, ok := c.Val(dwarf.AttrDataMemberLoc).(int64); ok && c.Tag == dwarf.TagMember {
				got[name+"."+field] = off
			}
		}
	}
	for field, off := range want {
		if g, ok := got[field]; !ok || g != off {
			t.Errorf("%s: offset %d in layout_linux_amd64.go, %d (found %v) in the runtime", field, off, g, ok)
		}
	}
}

// runtimeDWARF returns the debug information of this test binary, or of an
// empty program built with the same toolchain where the binary has none.
func runtimeDWARF(t *testing.T) *dwarf.Data {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if d, err := readDWARF(exe); err == nil {
		return d
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no debug information in the test binary and no go command: %v", err)
	}
	dir := t.TempDir()
	for name, text := range map[string]string{
		"go.mod":  "module layoutprobe\n",
		"main.go": "package main\n\nfunc main() {}\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(goCmd, "build", "-o", "probe", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		// An empty program that does not build says something about the
		// environment (no writable build cache, say), not about the layout.
		t.Skipf("no debug information in the test binary, and go build of an empty program failed: %v\n%s", err, out)
	}
	d, err := readDWARF(filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func readDWARF(path string) (*dwarf.Data, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.DWARF()
}

// probe runs probeSignalAsm under g on the calling (locked) thread and
// reports whether its pattern is left anywhere in stack.
func probe(t *testing.T, stack []byte, g guardChoice) bool {
	t.Helper()
	var pattern [16]byte
	rand.Read(pattern[:])
	probeSignalAsm(&pattern, int(unix.SIGURG), g.guard, g.ticks)
	return onStack(stack, pattern[:])
}

// onStack reports whether pattern is in stack, searching a copy: the
// search holds the pattern in vector registers, and a signal that lands
// during a search of the stack itself (the collector's preemption, say)
// saves them into a frame at the stack's top, which the search reaches
// last and finds. One guarded probe in about 200,000 failed so.
func onStack(stack, pattern []byte) bool {
	return bytes.Contains(bytes.Clone(stack), pattern)
}

// canariesWritten plants a nonzero word at each of words, runs call, and
// reports whether call wrote any of them (a guard writes 0 where it plants
// a canary). A signal that lands in between writes its frame's
// FP_XSTATE_MAGIC1 over the word instead, which says nothing about call:
// then it runs again.
func canariesWritten(t *testing.T, words []*uint32, call func()) bool {
	t.Helper()
	for range 100 {
		for _, w := range words {
			*w = 0x5a5a5a5a
		}
		call()
		written, signaled := false, false
		for _, w := range words {
			switch *w {
			case 0x5a5a5a5a:
			case fpMagic1:
				signaled = true
			default:
				written = true
			}
		}
		if !signaled {
			return written
		}
	}
	t.Fatal("a signal frame landed on the canaries in 100 calls of 100")
	return false
}

// lockedSignalStack locks the test's goroutine to its thread until the
// test ends and returns the thread's signal stack, failing the test where
// the runtime's record of it is not the kernel's.
func lockedSignalStack(t *testing.T) []byte {
	t.Helper()
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	stack, ok := threadSignalStack()
	if !ok {
		t.Fatal("the thread's signal stack does not match the kernel's")
	}
	return stack
}

// requireControl probes rounds times with no guard, and fails the test
// unless the marker is found on stack after most of them: else the probe or
// the search does not work. Another signal landing between the probe and
// the search overwrites the frame, so the control may miss now and then.
func requireControl(t *testing.T, stack []byte, rounds int) {
	t.Helper()
	found := 0
	for range rounds {
		if probe(t, stack, guardChoice{guard: guardOff}) {
			found++
		}
	}
	if found < rounds/2 {
		t.Fatalf("with no guard the marker was found after %d of %d signals: the control does not work", found, rounds)
	}
	t.Logf("control: marker found after %d of %d signals", found, rounds)
}

// TestCanaryCatchesSignal sends a signal to the own thread in the middle of
// a guarded routine, while 14 XMM registers hold a marker, and searches the
// thread's signal stack for the marker afterwards. The control, with no
// guard, must find it in the signal's frame (else the search or the probe
// does not work); under the canaries the counter of detections must go up
// and the marker must be gone; under blocking and under the time stamp
// counter it must be gone too.
func TestCanaryCatchesSignal(t *testing.T) {
	requireCanary(t)
	stack := lockedSignalStack(t)
	const rounds = 20
	requireControl(t, stack, rounds)
	modes := guardModes(t)
	for _, name := range []string{"canary", "block", "detect"} {
		g, ok := modes[name]
		if !ok {
			continue
		}
		hits := atomic.LoadUint64(&canaryHits)
		for i := range rounds {
			if probe(t, stack, g) {
				t.Errorf("guard %s: marker found on the signal stack after signal %d", name, i)
			}
		}
		caught := atomic.LoadUint64(&canaryHits) - hits
		if name == "canary" && caught < rounds {
			t.Errorf("guard canary: %d detections for %d signals", caught, rounds)
		}
		if name != "canary" && caught != 0 {
			t.Errorf("guard %s: %d canary detections, want 0", name, caught)
		}
	}
}

// TestCanaryFallback checks what the canary guard does on an M whose
// record of the signal stack it must not trust, each condition set here by
// hand in the runtime's m of a locked thread: one that has run C code
// (m.ncgocall raised by 2, past the one call the runtime makes on m0 in a
// cgo binary), the M of a thread created by C (m.isextra), whose recorded
// signal stack C may have moved or freed, and one whose signal stack the
// runtime adopted from C (m.newSigstack false). The start-up check must
// reject such an M (threadSignalStack), and the guard must not write
// its canaries: nonzero words planted where they go stay as they are. It
// falls back to blocking (threshold 0) or to the time stamp counter; a
// threshold no call reaches shows that the fallback really is the counter:
// the marker then stays, where the canaries would have caught it.
func TestCanaryFallback(t *testing.T) {
	requireCanary(t)
	conditions := []struct {
		name string
		set  func(m unsafe.Pointer) (undo func())
	}{
		{"ncgocall", func(unsafe.Pointer) func() { return fakeCgo(2, 0) }},
		{"isextra", func(m unsafe.Pointer) func() {
			b := (*bool)(unsafe.Add(m, offMIsextra))
			*b = true
			return func() { *b = false }
		}},
		{"newSigstack", func(m unsafe.Pointer) func() {
			b := (*bool)(unsafe.Add(m, offMNewSigstack))
			*b = false
			return func() { *b = true }
		}},
	}
	for _, c := range conditions {
		t.Run(c.name, func(t *testing.T) {
			stack := lockedSignalStack(t)
			defer c.set(threadM())()
			if _, ok := threadSignalStack(); ok {
				t.Error("the start-up check accepts this M")
			}

			top := uintptr(unsafe.Pointer(unsafe.SliceData(stack))) + uintptr(len(stack))
			base := uintptr(unsafe.Pointer(unsafe.SliceData(stack)))
			words := []*uint32{
				(*uint32)(unsafe.Pointer(&stack[(top-uintptr(canaryFrame))&^63+fxSwBytes-base])),
				(*uint32)(unsafe.Pointer(&stack[(top-uintptr(canaryFrameMax))&^63+fxSwBytes-base])),
			}
			src := make([]byte, 32)
			dst := make([]byte, 32)
			if canariesWritten(t, words, func() { copyAsm(dst, src, guardCanary, ^uint64(0)) }) {
				t.Errorf("canaries written (%#x, %#x): the guard trusted the recorded signal stack", *words[0], *words[1])
			}

			hits := atomic.LoadUint64(&canaryHits)
			if probe(t, stack, guardChoice{guard: guardCanary, ticks: 0}) {
				t.Error("fallback to blocking: marker found on the signal stack")
			}
			found := 0
			for range 10 {
				if probe(t, stack, guardChoice{guard: guardCanary, ticks: ^uint64(0)}) {
					found++
				}
			}
			if found == 0 {
				t.Error("fallback to a counter threshold no call reaches: marker never found, so the canaries were used")
			}
			if n := atomic.LoadUint64(&canaryHits) - hits; n != 0 {
				t.Errorf("%d canary detections on an M whose signal stack is not trusted, want 0", n)
			}
		})
	}
}

// threadM returns the calling thread's m. checkptr (on with -race) cannot
// tell that g, reached through a uintptr, is a live allocation.
//
//go:nocheckptr
func threadM() unsafe.Pointer {
	var st threadState
	threadStateAsm(&st)
	return *(*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(nil), uintptr(st.g)+offGM))
}

// TestCanaryLargeFrame covers the larger signal frame of a thread that
// has used AMX, on CPUs that have it. The process must ask the kernel for
// AMX first, which it cannot take back, so the test runs itself in a
// child process.
func TestCanaryLargeFrame(t *testing.T) {
	requireCanary(t)
	if canaryFrameMax == canaryFrame {
		t.Skip("no XSAVE component that enlarges signal frames (AMX) on this CPU")
	}
	if os.Getenv("AESCTR_AMX_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestCanaryLargeFrame$", "-test.v")
		cmd.Env = append(os.Environ(), "AESCTR_AMX_CHILD=1")
		out, err := cmd.CombinedOutput()
		t.Logf("child:\n%s", out)
		if err != nil {
			t.Fatalf("child: %v", err)
		}
		if bytes.Contains(out, []byte("--- SKIP")) {
			t.Skip("the child skipped")
		}
		return
	}
	const archReqXcompPerm = 0x1023
	if _, _, errno := unix.RawSyscall(unix.SYS_ARCH_PRCTL, archReqXcompPerm, xtileData, 0); errno != 0 {
		t.Skipf("the kernel refused AMX: %v", errno)
	}
	stack := lockedSignalStack(t)
	var cfg [64]byte
	cfg[0] = 1   // palette 1
	cfg[16] = 64 // tile 0: 64 bytes a row
	cfg[48] = 16 // and 16 rows
	amxTouchAsm(&cfg)

	top := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(stack)))) + uint64(len(stack))
	wantAt := int((top-canaryFrameMax)&^63 - (top - uint64(len(stack))) + fxXMM)
	var pattern [16]byte
	rand.Read(pattern[:])
	probeSignalAsm(&pattern, int(unix.SIGURG), guardOff, 0)
	at := bytes.Index(stack, pattern[:])
	if at != wantAt {
		t.Fatalf("after AMX use, the frame's XMM registers are at %d of the signal stack, want %d (frame size %d)", at, wantAt, canaryFrameMax)
	}
	hits := atomic.LoadUint64(&canaryHits)
	if probe(t, stack, guardChoice{guard: guardCanary}) {
		t.Error("guard canary: marker found on the signal stack of a thread with the larger frame")
	}
	if atomic.LoadUint64(&canaryHits) == hits {
		t.Error("guard canary: the larger frame was not detected")
	}
}

// TestCanaryUnderProfiling runs XOR of 32 bytes on a locked thread with the
// CPU profiler on, whose SIGPROF lands mostly in the assembly of a thread
// that does nothing else: the canaries must catch some of those signals,
// and no frame may keep the plaintext block, which only the kernel could
// copy out of the registers, on the thread's signal stack afterwards.
func TestCanaryUnderProfiling(t *testing.T) {
	requireCanary(t)
	if testing.Short() {
		t.Skip("runs the profiler for a second; skipped in -short mode")
	}
	if err := pprof.StartCPUProfile(io.Discard); err != nil {
		t.Skipf("CPU profiler busy: %v", err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	stack, ok := threadSignalStack()
	if !ok {
		pprof.StopCPUProfile()
		t.Fatal("the thread's signal stack does not match the kernel's")
	}
	var marker [16]byte
	rand.Read(marker[:])
	src := bytes.Repeat(marker[:], 2)
	dst := make([]byte, len(src))
	key, salt := randomKey(t)
	rk := expand(t, &key)
	var scratch [16]byte
	if !SetSignalGuardForTest("canary") {
		t.Fatal(`SetSignalGuardForTest("canary") refused`)
	}
	hits := atomic.LoadUint64(&canaryHits)
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		for range 1000 {
			XOR(rk, &salt, 1, dst, src, &scratch)
		}
	}
	SetSignalGuardForTest("auto")
	pprof.StopCPUProfile()
	caught := atomic.LoadUint64(&canaryHits) - hits
	t.Logf("%d signals caught by the canaries", caught)
	if caught == 0 {
		t.Error("no SIGPROF caught in a second of profiling a thread that runs the assembly")
	}
	if onStack(stack, marker[:]) {
		t.Error("the plaintext block is on the thread's signal stack")
	}
}

// TestCanaryAfterConfirmation: on an M that has made cgo calls, the canary
// guard falls back until the kernel has confirmed the M's signal stack.
// Where it falls back to blocking it notes the M, and the next call
// through pickGuard on that M asks the kernel; then the guard plants its
// canaries and catches a signal as on any Go thread, until the M's next
// cgo call, and not while C has called back into Go or when the record is
// another M's or another stack's.
func TestCanaryAfterConfirmation(t *testing.T) {
	requireCanary(t)
	stack := lockedSignalStack(t)
	defer fakeCgo(2, 0)()
	var st threadState
	threadStateAsm(&st)
	top := uintptr(unsafe.Pointer(unsafe.SliceData(stack))) + uintptr(len(stack))
	base := uintptr(unsafe.Pointer(unsafe.SliceData(stack)))
	canary := (*uint32)(unsafe.Pointer(&stack[(top-uintptr(canaryFrame))&^63+fxSwBytes-base]))
	src, dst := make([]byte, 32), make([]byte, 32)
	// planted reports whether a guarded copy, whose fallback is the time
	// stamp counter with ticks, wrote the canary.
	planted := func(ticks uint64) bool {
		return canariesWritten(t, []*uint32{canary}, func() { copyAsm(dst, src, guardCanary, ticks) })
	}

	atomic.StoreUint64(&cgoMiss, 0)
	if planted(^uint64(0)) {
		t.Fatal("canary planted on an M with cgo calls that nothing confirmed")
	}
	if m := atomic.LoadUint64(&cgoMiss); m != 0 {
		t.Errorf("a call that falls back to detection noted M %d", m-1)
	}
	if planted(0) {
		t.Fatal("canary planted on an M with cgo calls that nothing confirmed")
	}
	if m := atomic.LoadUint64(&cgoMiss); m != st.id+1 {
		t.Fatalf("a call that falls back to blocking noted %d, want M %d plus one", m, st.id)
	}
	confirmThread(st.id + 2) // another M's miss: nothing to ask here
	if atomic.LoadUint64(&cgoMiss) != st.id+1 || planted(0) {
		t.Fatal("an M that did not miss confirmed its stack")
	}
	pickGuard(detectMax + 1)
	if m := atomic.LoadUint64(&cgoMiss); m != 0 {
		t.Errorf("pickGuard on the M that missed left the miss noted (%d)", m)
	}
	if !planted(0) || !planted(^uint64(0)) {
		t.Fatal("no canary planted once the kernel confirmed the signal stack")
	}
	hits := atomic.LoadUint64(&canaryHits)
	for i := range 10 {
		if probe(t, stack, guardChoice{guard: guardCanary, ticks: ^uint64(0)}) {
			t.Errorf("signal %d: marker found on the signal stack under the confirmed canaries", i)
		}
	}
	if n := atomic.LoadUint64(&canaryHits) - hits; n < 10 {
		t.Errorf("%d canary detections for 10 signals", n)
	}

	// Each field of the record must match.
	slot := &checkedStacks[st.id%uint64(len(checkedStacks))]
	good := slot.Load()
	for _, c := range []struct {
		name string
		rec  checkedStack
	}{
		{"another M", checkedStack{id: good.id + checkedSlots, ncgocall: good.ncgocall, lo: good.lo, hi: good.hi}},
		{"fewer cgo calls", checkedStack{id: good.id, ncgocall: good.ncgocall - 1, lo: good.lo, hi: good.hi}},
		{"another stack start", checkedStack{id: good.id, ncgocall: good.ncgocall, lo: good.lo + 4096, hi: good.hi}},
		{"another stack top", checkedStack{id: good.id, ncgocall: good.ncgocall, lo: good.lo, hi: good.hi + 4096}},
	} {
		slot.Store(&c.rec)
		if planted(^uint64(0)) {
			t.Errorf("%s: canary planted on a record that does not match", c.name)
		}
	}
	slot.Store(good)
	func() {
		u := (*int32)(unsafe.Add(threadM(), offMNcgo))
		*u++
		defer func() { *u-- }()
		if planted(^uint64(0)) {
			t.Error("canary planted while C has called back into Go")
		}
	}()
	if !planted(^uint64(0)) {
		t.Fatal("the confirmation was lost")
	}
	// Another cgo call, with the confirmation still remembered.
	n := (*uint64)(unsafe.Add(threadM(), offMNcgocall))
	*n++
	defer func() { *n-- }()
	if planted(^uint64(0)) {
		t.Error("canary planted after another cgo call, on the old confirmation")
	}
}

// BenchmarkGuardCgoThread is XORInPlace and Copy under the automatic guard
// on a Go thread and on one whose M has made cgo calls. There, calls of
// 1 KiB use the canaries once the kernel has confirmed the signal stack
// (the first falls back to blocking and notes the thread, the second asks),
// where every call blocked signals before (BenchmarkGuard's guard=block);
// calls of 32 B, which do not ask, fall back to detection as before.
func BenchmarkGuardCgoThread(b *testing.B) {
	requireSupported(b)
	requireCanary(b)
	key, salt := randomKey(b)
	rk := expand(b, &key)
	var scratch [16]byte
	for _, thread := range []string{"go", "ranC"} {
		for _, size := range []int{32, 1024} {
			buf, src := make([]byte, size), make([]byte, size)
			run := func(name string, op func()) {
				b.Run(fmt.Sprintf("op=%s/thread=%s/size=%d", name, thread, size), func(b *testing.B) {
					// b.Run runs this on a goroutine of its own.
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
					if thread == "ranC" {
						defer fakeCgo(2, 0)()
					}
					b.SetBytes(int64(size))
					b.ReportAllocs()
					for b.Loop() {
						op()
					}
				})
			}
			run("xor", func() { XORInPlace(rk, &salt, 1, buf, &scratch) })
			run("copy", func() { Copy(buf, src) })
		}
	}
}
