package memscan

import (
	"encoding/binary"
	"fmt"
)

// The x86-64 signal frame the kernel builds (struct rt_sigframe): the
// return address pretcode, then struct ucontext: uc_flags, uc_link,
// uc_stack (ss_sp, ss_flags and padding, ss_size), uc_mcontext (struct
// sigcontext: r8-r15 rdi rsi rbp rbx rdx rax rcx rsp rip eflags, the
// segment selectors in one word, err trapno oldmask cr2 fpstate and eight
// reserved words), uc_sigmask; then the siginfo. The FPU state it points to
// (fpstate) is 64-byte aligned and carries struct _fpx_sw_bytes at 464:
// FP_XSTATE_MAGIC1, then the size of the whole FPU area (extended_size).
const (
	sigframeSSSP    = 24
	sigframeSSSize  = 40
	sigframeRSP     = 48 + 15*8
	sigframeRIP     = 48 + 16*8
	sigframeFPState = 48 + 23*8
	fxMagic1Off     = 464
	fxExtSizeOff    = 468
	fpXstateMagic1  = 0x46505853

	// sigframeReach bounds both searches: for the FPU state below an
	// address, and for the frame below its FPU state, which the kernel
	// puts right under it.
	sigframeReach = 4096
)

// SignalFrame is an x86-64 signal frame found in a core by
// Core.SignalFrameAt, with what the kernel saved in it.
type SignalFrame struct {
	Addr             uint64 // the rt_sigframe (its pretcode word)
	FPState          uint64 // its FPU state, which the frame points to
	FPSize           uint64 // bytes of FPU state (extended_size)
	StackLo, StackHi uint64 // the signal stack it was delivered on (uc_stack)
	RIP, RSP         uint64 // where the signal interrupted the thread
}

// Top reports whether the frame lies where the kernel puts one for a
// signal that finds the thread off its signal stack: its FPU state right
// under the top, at round_down(StackHi-FPSize, 64). A Go thread takes
// every asynchronous signal there, since the runtime's handlers block all
// signals while they run.
func (fr SignalFrame) Top() bool {
	return fr.FPSize <= fr.StackHi && fr.FPState == (fr.StackHi-fr.FPSize)&^63
}

// HandledBy returns a thread of ts that, when the dump was taken, was
// handling the signal of frame fr: the frame is at the top of its signal
// stack, and the thread's stack pointer lies on that stack at or below the
// frame's end of the handler's return (Addr+8, once the handler has
// returned to the restorer that calls rt_sigreturn). Such a frame was
// still in use; one that no thread is running under was left behind.
//
// It cannot see a frame overwritten in part by a later one at the same
// place with a smaller FPU state (a thread that has used AMX): the older
// frame's bytes beyond the newer one then read as in use too.
func (fr SignalFrame) HandledBy(ts []Thread) (Thread, bool) {
	if !fr.Top() {
		return Thread{}, false
	}
	for _, t := range ts {
		if fr.StackLo <= t.RSP && t.RSP <= fr.Addr+8 {
			return t, true
		}
	}
	return Thread{}, false
}

// String describes the frame for a test log.
func (fr SignalFrame) String() string {
	return fmt.Sprintf("signal frame at %#x (FPU state %#x, %d bytes) on stack [%#x, %#x), interrupted rip %#x rsp %#x",
		fr.Addr, fr.FPState, fr.FPSize, fr.StackLo, fr.StackHi, fr.RIP, fr.RSP)
}

// SignalFrameAt returns the x86-64 signal frame whose FPU state holds
// addr: the nearest 64-byte-aligned word at most 4 KiB below addr with
// FP_XSTATE_MAGIC1 464 bytes in, whose rt_sigframe lies within 4 KiB
// below it, points to it (uc_mcontext.fpstate) and lies on the signal stack
// it records (uc_stack). It is the core-file counterpart of SignalFrameOf
// and shares its blind spot: past the first 4 KiB of an FPU state with AMX
// tile data, addr reads as in no frame.
//
// It returns ErrNoSignalFrame when there is no such frame, ErrCoreArch for
// a core of another machine, and wrapped I/O errors.
func (c *Core) SignalFrameAt(addr uint64) (SignalFrame, error) {
	if err := c.checkArch(); err != nil {
		return SignalFrame{}, err
	}
	var w [4]byte
	for fx := addr &^ 63; fx+sigframeReach > addr && fx >= sigframeReach; fx -= 64 {
		if c.ReadAt(w[:], fx+fxMagic1Off) != nil || binary.LittleEndian.Uint32(w[:]) != fpXstateMagic1 {
			continue
		}
		if fr, ok := c.frameOf(fx); ok {
			return fr, nil
		}
	}
	return SignalFrame{}, fmt.Errorf("%w: %#x", ErrNoSignalFrame, addr)
}

// frameOf finds the rt_sigframe of the FPU state at fx.
func (c *Core) frameOf(fx uint64) (SignalFrame, bool) {
	var w [4]byte
	if c.ReadAt(w[:], fx+fxExtSizeOff) != nil {
		return SignalFrame{}, false
	}
	for f := fx - 8; f+sigframeReach > fx; f -= 8 {
		if p, err := c.uint64At(f + sigframeFPState); err != nil || p != fx {
			continue
		}
		fr := SignalFrame{Addr: f, FPState: fx, FPSize: uint64(binary.LittleEndian.Uint32(w[:]))}
		var size uint64
		ok := true
		for _, wd := range []struct {
			dst *uint64
			at  uint64
		}{{&fr.StackLo, sigframeSSSP}, {&size, sigframeSSSize}, {&fr.RIP, sigframeRIP}, {&fr.RSP, sigframeRSP}} {
			v, err := c.uint64At(f + wd.at)
			*wd.dst, ok = v, ok && err == nil
		}
		fr.StackHi = fr.StackLo + size
		// A word that happens to equal fx is not a frame unless the frame
		// and its FPU state lie on the stack it names.
		if !ok || fr.StackHi < fr.StackLo || f < fr.StackLo || fx+fr.FPSize > fr.StackHi {
			continue
		}
		return fr, true
	}
	return SignalFrame{}, false
}
