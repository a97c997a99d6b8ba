package aesctr

import (
	"encoding/hex"
	"fmt"
	"os"
	"reflect"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/memshuffle/memshuffle/internal/memscan"
)

// stormThread is a thread of a storm's process, with what places memory it
// writes: the signal stack the kernel has for it, where its signal frames
// go, and the address of a local variable of the goroutine locked to it.
type stormThread struct {
	Role      string
	TID       int
	AltLo     uint64 // signal stack [AltLo, AltHi), both 0 when it has none
	AltHi     uint64
	Goroutine uint64
}

// kernelStack is the kernel's stack_t, as sigaltstack takes it.
type kernelStack struct {
	sp    uintptr
	flags int32
	size  uintptr
}

// thisThread describes the calling thread, which the caller has locked;
// local is the address of one of the caller's local variables.
func thisThread(role string, local unsafe.Pointer) stormThread {
	th := stormThread{Role: role, TID: unix.Gettid(), Goroutine: uint64(uintptr(local))}
	var ss kernelStack
	const ssDisable = 2
	if _, _, errno := unix.RawSyscall(unix.SYS_SIGALTSTACK, 0, uintptr(unsafe.Pointer(&ss)), 0); errno == 0 && ss.flags&ssDisable == 0 {
		th.AltLo = uint64(ss.sp)
		th.AltHi = uint64(ss.sp + ss.size)
	}
	return th
}

// stormHit is a copy of a storm's plaintext found outside its mapping.
type stormHit struct {
	where       string // see where
	workerFrame bool   // in the FPU state of a signal frame on a worker's signal stack
}

// where says where the hit h in the memory of process pid, the storm of
// rep, lies, so that every hit is attributed rather than counted: its
// mapping; the signal stack of a storm thread holding it, and how far below
// its top; the signal frame whose FPU state holds it (the register, the
// signal, the function it interrupted and the signal stack written in the
// frame); a goroutine stack it lies near; or, when it is in no frame, the
// bytes around it. The memory is read again for this, after the scan.
func where(pid int, h memscan.Hit, rep *stormReport) stormHit {
	var b strings.Builder
	m := h.Mapping
	fmt.Fprintf(&b, "%#x in %s %s [%#x, %#x) at +%#x", h.Addr, m.Name(), m.Perms, m.Start, m.End, h.Addr-m.Start)
	worker := false
	for _, th := range rep.Threads {
		if th.AltLo <= h.Addr && h.Addr < th.AltHi {
			worker = strings.HasPrefix(th.Role, "worker")
			fmt.Fprintf(&b, "; on the signal stack of the %s (tid %d) [%#x, %#x), %#x below its top", th.Role, th.TID, th.AltLo, th.AltHi, th.AltHi-h.Addr)
		}
		if d := int64(h.Addr - th.Goroutine); d > -8<<10 && d < 8<<10 {
			fmt.Fprintf(&b, "; %+#x from a local of the %s's goroutine", d, th.Role)
		}
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		fmt.Fprintf(&b, "; %v", err)
		return stormHit{where: b.String()}
	}
	defer f.Close()
	slide := rep.Entry - uint64(reflect.ValueOf(runStorm).Pointer())
	if frame, sp, ok := frameAt(f, h.Addr, slide); ok {
		b.WriteString("; ")
		b.WriteString(frame)
		if sp != 0 {
			fmt.Fprintf(&b, " of %s", roleOf(sp, rep.Threads))
		}
		return stormHit{where: b.String(), workerFrame: worker}
	}
	ctx := make([]byte, 64)
	if n, _ := f.ReadAt(ctx, int64(h.Addr-24)); n == len(ctx) {
		fmt.Fprintf(&b, "; in no signal frame; the bytes from -24: %s", hex.EncodeToString(ctx))
	}
	return stormHit{where: b.String()}
}

// roleOf names the storm thread whose signal stack starts at sp.
func roleOf(sp uint64, threads []stormThread) string {
	for _, th := range threads {
		if th.AltLo == sp {
			return fmt.Sprintf("the %s (tid %d)", th.Role, th.TID)
		}
	}
	return "no storm thread"
}
