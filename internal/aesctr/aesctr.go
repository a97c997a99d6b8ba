// Package aesctr is AES-256 in counter mode for memory the Go runtime does not
// manage: the round keys live in a buffer the caller provides (in memshuffle,
// locked mmap memory excluded from core dumps), and the work is done in
// assembly that keeps the keystream and the data it processes in registers,
// takes each round key from that buffer as a memory operand, and keeps
// signals from saving any of it where a core dump would find it.
//
// crypto/aes keeps its expanded key on the Go heap, where the garbage
// collector may copy it and nothing wipes it; this package exists so that no
// such copy is ever made.
//
// # Counter blocks
//
// Block j of a call to [XOR] is the 8-byte salt, as given, followed by the
// 64-bit counter value base+j in big-endian order. The caller guarantees that
// base+j does not pass 2^64 for any block it uses, so the low half never
// carries into the salt; under that guarantee the keystream is exactly that of
// crypto/cipher.NewCTR with the initial counter block salt || base, and two
// calls with disjoint counter runs under one key and salt never share a block.
//
// # Threat model
//
// [Expand] reads the key and writes the round keys with the assembly routine
// alone: no key word, round key or keystream byte is held in a Go variable,
// spilled to a goroutine stack or allocated on the heap, and the XMM
// registers that held them are cleared before each function returns. [XOR]
// never loads a round key into a register at all: each AESENC takes it from
// memory, so a snapshot of the registers in the middle of a call holds AES
// states and data, not round keys. The assembly is never asynchronously
// preempted (the runtime refuses to stop assembly at an arbitrary
// instruction), so the scheduler never saves its registers either.
//
// The kernel does: a signal delivered while the assembly runs (the garbage
// collector's preemption signal, the profiler's SIGPROF) makes it save the
// register file, XMM registers included, in a frame on the thread's signal
// stack, which for a Go thread is ordinary Go memory that is dumped with the
// process and never wiped. So on Linux every call is guarded, from assembly,
// where the goroutine cannot change threads in the middle:
//
//   - [Expand], and [XOR], [XOR2], [Copy] and [Equal] of more than 4 KiB,
//     block every asynchronous signal of the thread before the first secret is loaded
//     and restore the mask after the registers are cleared: a signal that
//     arrives meanwhile stays pending, and its frame holds nothing secret.
//     Two rt_sigprocmask syscalls per call.
//   - Shorter calls, the common case in memshuffle, detect the frame
//     instead. The kernel puts a frame's FPU state at a fixed distance
//     below the top of the signal stack (one of two: threads that have
//     used AMX get a larger one) and always writes a magic word in it; the
//     routine zeroes that word, for both distances, before loading a
//     secret, and when it finds it overwritten after clearing the
//     registers, it zeroes the thread's whole signal stack before
//     returning. It finds the signal stack through the runtime's record of
//     it (g.m.gsignal), at offsets checked against the compiler's debug
//     information by a test and against the kernel, with a signal sent to
//     the own thread at first use (SIGURG, which the runtime itself sends
//     to preempt goroutines, so a program that asked os/signal for it
//     already sees spurious ones). A few loads and stores per call, and a
//     syscall and a wipe only when a signal came.
//   - Where that check fails (another Go release, a CPU without XSAVE, a
//     kernel that lays frames out otherwise), and on a thread that has run
//     C code, which could have given the thread another signal stack (for
//     a thread Go made, until the kernel has confirmed that stack since
//     the thread's last cgo call: see [WatchSignals]),
//     calls of up to 128 bytes read the time stamp counter before and
//     after instead. A signal taken in between costs at least its delivery
//     and the rt_sigreturn syscall that ends its handler, so when the call
//     took longer than half the fastest getppid round trip (measured at
//     first use) the routine zeroes the thread's signal stack before
//     returning. Two counter reads per call. On a CPU without an invariant
//     time stamp counter, and for the longer calls, signals are blocked.
//
// What is left:
//
//   - On the other systems nothing is guarded: the guards' syscalls are
//     Linux's. (Windows has no signals, but the runtime suspends a thread
//     to preempt it and copies its registers into Go memory.)
//   - A synchronous signal (a fault in the assembly, which the runtime turns
//     into a fatal error) is not blocked, and its frame holds the registers
//     of the moment; so does a core dump the kernel writes then.
//   - A debugger or dumper that stops the thread (ptrace, as gcore does)
//     reads its registers directly, in the middle of the assembly if that is
//     where the thread is. A core file keeps them in its notes, not in the
//     process's memory.
//   - In a call guarded by detection, the frame of a signal stays in memory
//     from the signal's delivery, through its handler (microseconds: the
//     profiler's walks the stack), until the wipe at the end of the same
//     call (at most 4 KiB of work after the handler returns). A dump that
//     stops the thread in that window holds the frame: gcore of a process
//     renting and returning 32-byte entries under GC and profiler signals
//     caught one about once in 170 dumps. The frame stays for good if the
//     signal ends the process (SIGQUIT with GOTRACEBACK=crash writes a core
//     dump from its handler, which never returns to the wipe).
//   - The canaries trust that the signal stack of a thread that has run no
//     C code is the one the runtime set up for it, and that the stack the
//     kernel confirmed for a thread that has is not moved before its next
//     cgo call; Go code that changes it with a raw sigaltstack syscall
//     defeats them, and so would C code that runs outside a counted cgo
//     call (a C signal handler the runtime forwards a signal to, the
//     runtime's own calls into libc) if it moved it.
//   - The time stamp counter's threshold is a measured bound, not a proof:
//     it assumes a signal never costs less than half a syscall round trip
//     measured at first use, which leaves room for the core to run twice
//     as fast then.
//   - A long [XOR] is not preemptible and holds its signals for its run
//     time (about 0.12 ms per MiB on a current x86 core), so callers split
//     long inputs; memshuffle does so at 256 KiB, and [Copy] and [Equal]
//     split theirs at 1 MiB, which they go through a few times faster.
//
// # Concurrency
//
// The functions keep no state. Round keys may be shared by any number of
// concurrent [XOR] calls; each call needs its own scratch block and dst.
//
// # Platform support
//
// Only amd64 with AES-NI and SSE4.1 is implemented ([Supported]). Elsewhere
// [Expand] fails with an error wrapping [errors.ErrUnsupported], and callers
// must use another cipher layer.
package aesctr

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// RoundKeysSize is the size of the expanded AES-256 encryption key: 15 round
// keys of 16 bytes.
const RoundKeysSize = 240

// errUnsupported is returned by Expand when the assembly cannot run here.
var errUnsupported = fmt.Errorf("memshuffle: AES-NI with SSE4.1 is not available: %w", errors.ErrUnsupported)

// Supported reports whether the assembly implementation can run on this CPU:
// amd64 with AES-NI and SSE4.1 (and SSSE3, which SSE4.1 implies). It is false
// on every other GOARCH.
func Supported() bool { return supported }

// Expand writes the AES-256 encryption round keys for key into rk. It reads
// key and writes rk only during the call and keeps no reference to either;
// the caller owns both and wipes key when it no longer needs it. rk must not
// be in use by a concurrent [XOR].
//
// Where [Supported] is false it writes nothing and returns an error wrapping
// [errors.ErrUnsupported].
func Expand(rk *[RoundKeysSize]byte, key *[32]byte) error {
	if !supported {
		return errUnsupported
	}
	// The whole key is in the registers: always block, never detect.
	g, ticks := guardBlock, uint64(0)
	if !guardOS {
		g = guardOff
	}
	if forced != nil {
		g, ticks = forced.guard, forced.ticks
	}
	expandKeyAsm(rk, key, g, ticks)
	return nil
}

// XOR sets dst[i] = src[i] ^ keystream[i], where byte i of the keystream is
// byte i%16 of AES-256 under the round keys rk of counter block i/16, and
// counter block j is salt || big-endian uint64(base+j).
//
// base+j must not pass 2^64 for any block of the call, that is
// base+(len(src)-1)/16 must not overflow: the low 64 bits of the counter
// block never carry into the salt, and past 2^64 the keystream would repeat.
// The caller enforces this; XOR does not check it.
//
// rk must be 16-byte aligned, as the assembly uses each round key as a
// memory operand (see the package documentation): memory from mmap, and a
// heap allocation of its own of RoundKeysSize bytes, are. dst and src must
// have the same length and either be the same slice or not overlap at all.
// XOR panics otherwise. scratch is used for a final partial block and is
// all zero when XOR returns. rk, salt and scratch are used only during the
// call and no reference to them is kept.
//
// XOR must only be called where [Supported] is true; it panics elsewhere.
// It does not allocate.
func XOR(rk *[RoundKeysSize]byte, salt *[8]byte, base uint64, dst, src []byte, scratch *[16]byte) {
	if !supported {
		panic("aesctr: XOR called where Supported() is false")
	}
	if len(dst) != len(src) {
		panic("aesctr: dst and src have different lengths")
	}
	if OverlapsInexactly(dst, src) {
		panic("aesctr: dst and src overlap but are not the same slice")
	}
	if uintptr(unsafe.Pointer(rk))%16 != 0 {
		panic("aesctr: round keys not 16-byte aligned")
	}
	g := guardWord(len(src))
	xorKeyStreamAsm(rk, salt, base, dst, src, scratch, uint8(g), g>>guardTicksShift)
}

// XORInPlace is XOR(rk, salt, base, buf, buf, scratch): it encrypts or
// decrypts buf where it is. With one slice there is nothing to compare, so
// it is the cheaper call for short inputs, which memshuffle's borrows and
// returns of small entries are. The same rules hold as for XOR.
func XORInPlace(rk *[RoundKeysSize]byte, salt *[8]byte, base uint64, buf []byte, scratch *[16]byte) {
	if !supported {
		panic("aesctr: XORInPlace called where Supported() is false")
	}
	if uintptr(unsafe.Pointer(rk))%16 != 0 {
		panic("aesctr: round keys not 16-byte aligned")
	}
	g := guardWord(len(buf))
	xorKeyStreamAsm(rk, salt, base, buf, buf, scratch, uint8(g), g>>guardTicksShift)
}

// XOR2 sets data[i] ^= ksA[i] ^ ksB[i], where ksA is the keystream of
// round keys rkA, salt saltA and counter values from baseA, as for [XOR],
// and ksB that of rkB, saltB and baseB: it turns data encrypted under one
// keystream into data encrypted under the other in one pass, with neither
// keystream, nor the plaintext, ever in memory, only their XOR in
// registers. The counter runs must not pass 2^64, as for XOR; rkA and rkB
// must be 16-byte aligned; scratch is used for a final partial block and
// is all zero when XOR2 returns. No reference to any argument is kept.
//
// XOR2 must only be called where [Supported] is true; it panics elsewhere.
// It does not allocate.
func XOR2(rkA *[RoundKeysSize]byte, saltA *[8]byte, baseA uint64, rkB *[RoundKeysSize]byte, saltB *[8]byte, baseB uint64, data []byte, scratch *[16]byte) {
	if !supported {
		panic("aesctr: XOR2 called where Supported() is false")
	}
	if uintptr(unsafe.Pointer(rkA))%16 != 0 || uintptr(unsafe.Pointer(rkB))%16 != 0 {
		panic("aesctr: round keys not 16-byte aligned")
	}
	g, ticks := guardFor(len(data))
	xor2KeyStreamAsm(rkA, saltA, baseA, rkB, saltB, baseB, data, scratch, g, ticks)
}

// copyChunk bounds one assembly call of Copy or Equal, which is not
// preemptible and holds its thread's signals while it runs: tens of µs,
// at most about as long as one of memshuffle's XOR pieces, where 64 KiB
// took a microsecond or two and the two rt_sigprocmask calls around it as
// long again on a machine with slow syscalls.
const copyChunk = 1 << 20

// Copy copies min(len(dst), len(src)) bytes from src to dst and returns the
// number copied, as the built-in copy does. Unlike the built-in copy it
// leaves none of the bytes in a register and lets no signal save them while
// it runs (see the package documentation), which is what copying a secret
// into locked memory needs.
//
// Where [Supported] is false, and where dst and src overlap (which a copy of
// a secret into fresh memory never does), it is the built-in copy.
func Copy(dst, src []byte) int {
	n := min(len(dst), len(src))
	if w := callWatch.Load(); w != nil {
		(*w)("Copy", n)
	}
	if !supported || n == 0 || OverlapsInexactly(dst[:n], src[:n]) || &dst[0] == &src[0] {
		return copy(dst, src)
	}
	for off := 0; off < n; off += copyChunk {
		end := min(off+copyChunk, n)
		g, ticks := guardFor(end - off)
		copyAsm(dst[off:end], src[off:end], g, ticks)
	}
	return n
}

// callWatch is the function WatchCallsForTest set, if any.
var callWatch atomic.Pointer[func(fn string, n int)]

// WatchCallsForTest has f called with the name ("Copy" or "Equal") and the
// length of every [Copy] and [Equal] until the function it returns is
// called: memshuffle's tests check with it that the calls which copy or
// compare plaintext (CopyFrom, Clone, ReadAll's growth, Equal,
// EqualEntries) do so with these, not with the built-in copy or ==, which
// no other test told apart.
func WatchCallsForTest(f func(fn string, n int)) (stop func()) {
	callWatch.Store(&f)
	return func() { callWatch.Store(nil) }
}

// ChooseGuard makes the choice of guard for short inputs that CopyNoSplit
// needs made, if it is not yet.
func ChooseGuard() { guardWord(detectMax) }

// CopyNoSplit is Copy for a caller that must not let its goroutine's stack
// grow, shrink or be checked until the copy is done: it is nosplit, and so
// is all it calls, so a secret the caller holds in a stack frame is not
// copied to a new stack, with the old one freed as it is, on the way. It
// copies in chunks of detectMax bytes under the guard already chosen for
// them. It reports false, copying nothing, when dst is shorter than src,
// when src is empty, and when that guard has not been chosen yet (before
// the first short call or ChooseGuard, and while a test forces one); where the
// assembly is not supported it is the built-in copy, as Copy is there.
//
//go:nosplit
func CopyNoSplit(dst, src []byte) bool {
	n := len(src)
	if n == 0 || len(dst) < n {
		return false
	}
	if !supported {
		copy(dst, src)
		return true
	}
	w := atomic.LoadUint64(&shortGuard)
	if w == 0 {
		return false
	}
	for off := 0; off < n; off += detectMax {
		end := min(off+detectMax, n)
		copyAsm(dst[off:end], src[off:end], uint8(w), w>>guardTicksShift)
	}
	return true
}

// Equal reports whether a and b hold the same bytes, as
// crypto/subtle.ConstantTimeCompare(a, b) == 1 does: in a time that depends
// on the lengths alone, never on the contents or on where they differ, and
// without looking at the bytes when the lengths differ. Like [Copy], and
// unlike ConstantTimeCompare, it leaves none of the bytes, nor anything
// computed from them but the answer, in a register, and lets no signal save
// them while it runs (see the package documentation), which is what
// comparing a secret needs. It reads a and b only during the call; they may
// overlap.
//
// Where [Supported] is false it is crypto/subtle.ConstantTimeCompare.
func Equal(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	if w := callWatch.Load(); w != nil {
		(*w)("Equal", len(a))
	}
	if !supported {
		return subtle.ConstantTimeCompare(a, b) == 1
	}
	// Every chunk is compared, and their answers combined without a
	// branch, so that a difference in an early chunk does not end the
	// comparison sooner.
	eq := 1
	for off := 0; off < len(a); off += copyChunk {
		end := min(off+copyChunk, len(a))
		g, ticks := guardFor(end - off)
		eq &= equalAsm(a[off:end], b[off:end], g, ticks)
	}
	return eq == 1
}

// The signal guards of the assembly (see the package documentation and
// aesctr_amd64.s).
const (
	guardOff    uint8 = 0 // nothing: only for tests
	guardBlock  uint8 = 1 // asynchronous signals blocked: two syscalls
	guardDetect uint8 = 2 // a late return detected, then the signal stack wiped
	guardCanary uint8 = 3 // an overwritten canary detected, then the signal stack wiped
)

// detectMax is the longest input guarded by the time stamp counter, where
// the canaries cannot be used, rather than by blocking signals. Detection
// costs two reads of the time stamp counter, and
// a syscall and a wipe of the signal stack each time it fires, which is
// every call that runs longer than the threshold: a few hundred bytes of
// AES here. Blocking costs two syscalls whatever the length. At 128 bytes
// and below (one batch of the assembly) detection almost never fires; above
// it the two syscalls are the smaller cost, and a signal frame never exists
// at all, not even for the microseconds of a long call until the wipe.
const detectMax = 128

// guardOS is whether the guards can run: their syscalls are Linux's. On
// the other systems the assembly runs unguarded (see the package
// documentation).
const guardOS = runtime.GOOS == "linux"

// canaryMax is the longest input guarded by canaries rather than by
// blocking signals. The canaries cost a few loads and stores whatever the
// length, and a syscall and a wipe of the signal stack only when a signal
// did arrive, so they are cheaper than blocking at every length; but while
// the call runs, a signal's frame holds secrets until the wipe at its end,
// and a signal whose handler never returns (a crash dump from SIGQUIT, for
// example) keeps it. Blocking leaves no such frame at all. 4 KiB (about
// half a microsecond of AES here) keeps that window as short as the
// syscalls blocking would cost, and covers the entry sizes where those
// syscalls dominate; the pieces of long entries still block.
const canaryMax = 4096

// guardFor returns the guard, and its threshold, of an assembly call on n
// bytes.
func guardFor(n int) (uint8, uint64) {
	w := guardWord(n)
	return uint8(w), w >> guardTicksShift
}

// guardWord is guardFor's answer as one word, ticks<<guardTicksShift |
// 1<<8 | guard. It inlines (just: the named result keeps it within the
// compiler's budget): inputs of up to detectMax bytes, which is every call
// for a small entry, read the automatic choice from shortGuard once
// pickGuard has worked it out, with no call and no spill of the caller's
// arguments around one.
func guardWord(n int) (w uint64) {
	if n <= detectMax {
		w = atomic.LoadUint64(&shortGuard)
	}
	if w == 0 {
		w = pickGuard(n)
	}
	return
}

// guardTicksShift places the threshold in a guard word; calibrateDetect
// keeps thresholds below 1<<(64-guardTicksShift).
const guardTicksShift = 16

// shortGuard is guardWord's answer for inputs of up to detectMax bytes,
// or 0 until pickGuard has stored it and whenever a test forces a guard
// (setForced), which sends every call to pickGuard.
// It is a plain word, read and written with the atomic functions, not an
// atomic.Uint64: in a race build those are nosplit assembly, where the
// methods are calls that check the stack, which CopyNoSplit must not make.
var shortGuard uint64

// cgoMiss is the id plus one of the last M on which the assembly fell back
// from guardCanary to blocking signals, for want of the kernel's
// confirmation that the signal stack of that M, which has made cgo calls,
// is still the runtime's (see watchSignals), and 0 once confirmThread has
// asked on that M. Calls that block come through pickGuard, on that M too,
// so the next one asks. Where the fallback is detection (calls of up to
// detectMax bytes, which shortGuard answers with no call) nothing is noted:
// asking costs a system call, and a thread that alternates cgo calls with
// such calls would ask after every one, where detection costs less.
var cgoMiss uint64

// pickGuard is guardWord's choice, worked out. It stores it in shortGuard
// when it holds for every input of up to detectMax bytes: the automatic
// choice, which is fixed once made.
func pickGuard(n int) uint64 {
	word := func(g uint8, ticks uint64) uint64 { return ticks<<guardTicksShift | 1<<8 | uint64(g) }
	if forced != nil {
		return word(forced.guard, forced.ticks)
	}
	if !guardOS {
		w := word(guardOff, 0)
		if n <= detectMax {
			atomic.StoreUint64(&shortGuard, w)
		}
		return w
	}
	if m := atomic.LoadUint64(&cgoMiss); m != 0 {
		confirmThread(m)
	}
	w := word(pickAutoGuard(n, autoGuards()))
	if n <= detectMax {
		atomic.StoreUint64(&shortGuard, w)
	}
	return w
}

// pickAutoGuard is the automatic choice of guard for n bytes under a.
func pickAutoGuard(n int, a autoGuard) (uint8, uint64) {
	if n <= canaryMax && a.canary {
		// On a thread that has run C code the assembly falls back to
		// detection with this threshold, or to blocking where it is 0,
		// until the kernel has confirmed the thread's signal stack.
		if n <= detectMax {
			return guardCanary, a.ticks
		}
		return guardCanary, 0
	}
	if n <= detectMax && a.ticks != 0 {
		return guardDetect, a.ticks
	}
	return guardBlock, 0
}

// autoGuard is what the automatic choice of guard rests on, found once.
type autoGuard struct {
	canary bool   // canaryReady
	ticks  uint64 // detectTicks
}

// The automatic choice, read on every call: auto is written once, before
// autoSet, so a call that sees autoSet reads it with two plain loads rather
// than through two sync.OnceValue closures.
var (
	autoSet  atomic.Bool
	autoOnce sync.Once
	auto     autoGuard
)

func autoGuards() autoGuard {
	if autoSet.Load() { // small enough to inline into guardFor
		return auto
	}
	return findAutoGuards()
}

func findAutoGuards() autoGuard {
	autoOnce.Do(func() {
		auto = autoGuard{canary: canaryReady(), ticks: detectTicks()}
		autoSet.Store(true)
	})
	return auto
}

// canaryReady reports whether guardCanary can be used: its start-up check
// (setupCanary) passed.
var canaryReady = sync.OnceValue(func() bool {
	return supported && guardOS && setupCanary()
})

// detectTicks is the threshold of guardDetect, or 0 where detection cannot
// be trusted and every call blocks signals instead.
var detectTicks = sync.OnceValue(calibrateDetect)

// calibrateDetect returns half the fewest ticks of a getppid round trip.
// A signal taken during the assembly costs the interrupted code more than
// that: at least its delivery and the rt_sigreturn syscall that ends its
// handler, which enters and leaves the kernel as getppid does and restores
// the whole register file on the way. Half leaves room for the core to run
// twice as fast as during the calibration (the counter itself ticks at a
// constant rate, which is checked: without an invariant counter detection
// is not used).
func calibrateDetect() uint64 {
	if !supported || !guardOS || !invariantTSCAsm() {
		return 0
	}
	ticks := syscallTicksAsm(64) / 2
	if ticks >= 1<<(64-guardTicksShift) {
		return 0 // beyond any real syscall, and beyond a guard word
	}
	return ticks
}

// guardChoice is a guard and its threshold.
type guardChoice struct {
	guard uint8
	ticks uint64
}

// forced, when not nil, replaces guardFor's choice. Only tests set it,
// with setForced.
var forced *guardChoice

// setForced makes g (nil: the automatic choice) guardFor's answer.
func setForced(g *guardChoice) {
	forced = g
	atomic.StoreUint64(&shortGuard, 0)
}

// SetSignalGuardForTest replaces the automatic choice of signal guard for
// the whole process, so that a test can show that its search finds the
// signal frames the guard prevents, and a benchmark can weigh the guards:
// "off" (no guard), "block" (signals blocked for every call), "detect"
// (detection by the time stamp counter for every call, whatever its length,
// where the counter can be trusted), "canary" (detection by canaries for
// every call, whatever its length) or "auto" (the default). It returns
// false, and changes nothing, for any other name, for "block" and "detect"
// where there are no guards (off Linux), and for "canary" where the
// canaries cannot be used. It must be called while no other
// function of the package runs, and only by tests.
func SetSignalGuardForTest(name string) bool {
	if !guardOS && (name == "block" || name == "detect") {
		return false
	}
	if name == "canary" && !canaryReady() {
		return false
	}
	switch name {
	case "auto":
		// Choose again now, as the first New does: until then CopyNoSplit
		// refuses, and a test run after this one would see the inbox
		// unused where a program never does.
		setForced(nil)
		ChooseGuard()
	case "off":
		setForced(&guardChoice{guard: guardOff})
	case "block":
		setForced(&guardChoice{guard: guardBlock})
	case "detect":
		setForced(&guardChoice{guard: guardBlock})
		if ticks := detectTicks(); ticks != 0 {
			setForced(&guardChoice{guard: guardDetect, ticks: ticks})
		}
	case "canary":
		setForced(&guardChoice{guard: guardCanary, ticks: detectTicks()})
	default:
		return false
	}
	return true
}

// Overlaps reports whether x and y share memory.
func Overlaps(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 {
		return false
	}
	xp := uintptr(unsafe.Pointer(unsafe.SliceData(x)))
	yp := uintptr(unsafe.Pointer(unsafe.SliceData(y)))
	return xp < yp+uintptr(len(y)) && yp < xp+uintptr(len(x))
}

// OverlapsInexactly reports whether x and y share memory without starting
// at the same address: the overlap crypto/cipher panics on. Same-start
// aliasing is fine for XOR, which reads each source block before writing
// the destination block at the same offset; any other overlap would make
// it read bytes it already overwrote.
func OverlapsInexactly(x, y []byte) bool {
	return Overlaps(x, y) && unsafe.SliceData(x) != unsafe.SliceData(y)
}
