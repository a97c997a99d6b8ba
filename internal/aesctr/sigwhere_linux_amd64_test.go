package aesctr

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
)

// The parts of an x86-64 rt_sigframe (arch/x86/include/asm/sigframe.h)
// that frameAt reads, as offsets from its start: pretcode, then the
// ucontext (uc_stack at 16 within it, uc_mcontext, a struct sigcontext, at
// 40), then the siginfo. The FPU state lies above the frame, where
// sigcontext.fpstate points.
const (
	sfStackSP   = 8 + 16        // uc.uc_stack.ss_sp
	sfStackSize = 8 + 16 + 16   // uc.uc_stack.ss_size
	sfRSP       = 8 + 40 + 120  // uc.uc_mcontext.rsp
	sfRIP       = 8 + 40 + 128  // uc.uc_mcontext.rip
	sfFPState   = 8 + 40 + 184  // uc.uc_mcontext.fpstate
	sfSigno     = 8 + 304       // info.si_signo
	sfMaxXSAVE  = 12 << 10      // more than any XSAVE area, AMX included
	sfMaxBelow  = 1 << 10       // rt_sigframe and its alignment, at most
	sfXMMEnd    = fxXMM + 16*16 // X0-X15
	sfLegacyEnd = 512           // the FXSAVE area
)

// frameAt looks for a signal frame whose FPU state holds addr: a 64-byte
// aligned XSAVE area below it carrying FP_XSTATE_MAGIC1 and, at the end of
// the size written beside it, FP_XSTATE_MAGIC2, and below that area the
// sigcontext pointing at it, in the memory f reads. It describes the
// register, the signal and the function the signal interrupted (named from
// this binary, whose code lies slide bytes lower than that of f's process),
// and returns the start of the signal stack written in the frame, or 0 when
// no sigcontext was found.
func frameAt(f *os.File, addr, slide uint64) (string, uint64, bool) {
	le := binary.LittleEndian
	if addr < fxXMM+sfMaxBelow {
		return "", 0, false
	}
	for fx := (addr - fxXMM) &^ 63; fx+sfMaxXSAVE > addr && fx >= sfMaxBelow; fx -= 64 {
		var sw [24]byte
		if _, err := f.ReadAt(sw[:], int64(fx+fxSwBytes)); err != nil || le.Uint32(sw[:]) != fpMagic1 {
			continue
		}
		xsize := uint64(le.Uint32(sw[16:]))
		var m2 [4]byte
		if _, err := f.ReadAt(m2[:], int64(fx+xsize)); err != nil || le.Uint32(m2[:]) != fpMagic2 || addr >= fx+xsize {
			return "", 0, false // the nearest frame below ends before addr
		}
		desc := fmt.Sprintf("%s of the XSAVE area at %#x (%d bytes)", xsaveField(addr-fx), fx, xsize)
		below := make([]byte, sfMaxBelow)
		if _, err := f.ReadAt(below, int64(fx-sfMaxBelow)); err != nil {
			return desc + ", no sigcontext readable below it", 0, true
		}
		for p := len(below) - 8; p >= sfFPState; p -= 8 {
			if le.Uint64(below[p:]) != fx {
				continue
			}
			fr := below[p-sfFPState:]
			if len(fr) < sfSigno+4 {
				break
			}
			rip := le.Uint64(fr[sfRIP:])
			sp := le.Uint64(fr[sfStackSP:])
			return fmt.Sprintf("%s, in the frame of signal %d that interrupted %s (rsp %#x), signal stack [%#x, %#x)",
				desc, int32(le.Uint32(fr[sfSigno:])), funcAt(rip, slide), le.Uint64(fr[sfRSP:]),
				sp, sp+le.Uint64(fr[sfStackSize:])), sp, true
		}
		return desc + ", no sigcontext found below it", 0, true
	}
	return "", 0, false
}

// xsaveField names the part of a standard-format XSAVE area at off.
func xsaveField(off uint64) string {
	switch {
	case off >= fxXMM && off < sfXMMEnd:
		return fmt.Sprintf("X%d+%d", (off-fxXMM)/16, (off-fxXMM)%16)
	case off < sfLegacyEnd:
		return fmt.Sprintf("byte %d of the FXSAVE area", off)
	}
	for i := uint32(2); i < 64; i++ {
		o, n := xsaveComponentAsm(i)
		if n != 0 && off >= uint64(o) && off < uint64(o)+uint64(n) {
			return fmt.Sprintf("byte %d of XSAVE component %d", off-uint64(o), i)
		}
	}
	return fmt.Sprintf("byte %d of the XSAVE area", off)
}

// funcAt names the function of this test binary holding pc in a process
// of it whose code is slide bytes further up, or says there is none.
func funcAt(pc, slide uint64) string {
	fn := runtime.FuncForPC(uintptr(pc - slide))
	if fn == nil {
		return fmt.Sprintf("%#x (no Go function)", pc)
	}
	return fmt.Sprintf("%s+%#x", fn.Name(), uintptr(pc-slide)-fn.Entry())
}
