package aesctr

import (
	"bytes"
	"os"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/memshuffle/memshuffle/internal/seccomptest"
)

// TestGuardBlockRefused runs the blocking guard where the system refuses
// rt_sigprocmask(SIG_BLOCK), as a system call filter may. The call then
// saves no mask, and a guard that restored one anyway set the thread's
// signal mask to whatever its frame held before: here, the bytes a
// deeper call left on the stack, which block every signal. The thread's
// mask must come out as it went in.
func TestGuardBlockRefused(t *testing.T) {
	if !Supported() {
		t.Skip("no AES-NI: the guard is not used")
	}
	refuse := []seccomptest.Rule{seccomptest.RefuseArg(unix.SYS_RT_SIGPROCMASK, 0, 0 /* SIG_BLOCK */, unix.EPERM)}
	seccomptest.Run(t, "sig-block-refused", refuse, func(t *testing.T) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		key, salt, scratch := new([32]byte), new([8]byte), new([16]byte)
		mem := make([]byte, RoundKeysSize+15) // the assembly needs the round keys 16-byte aligned
		off := -int(uintptr(unsafe.Pointer(&mem[0]))) & 15
		rk := (*[RoundKeysSize]byte)(mem[off:])
		src := bytes.Repeat([]byte{0x5a}, 32)
		dst := make([]byte, len(src))
		before := sigBlk(t)
		for range 8 {
			dirtyStack()
			expandKeyAsm(rk, key, guardBlock, 0)
			dirtyStack()
			xorKeyStreamAsm(rk, salt, 1, dst, src, scratch, guardBlock, 0)
			if after := sigBlk(t); after != before {
				t.Fatalf("signal mask %s before the guarded calls, %s after", before, after)
			}
		}
	})
}

// dirtyStack leaves set bits in the stack below its caller's frame, where
// the next call's frame goes.
//
//go:noinline
func dirtyStack() byte {
	var b [4096]byte
	for i := range b {
		b[i] = 0xff
	}
	return b[len(b)-1]
}

// sigBlk reads the calling thread's blocked signals.
func sigBlk(t *testing.T) string {
	raw, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		t.Skipf("no /proc/thread-self/status: %v", err)
	}
	for line := range bytes.SplitSeq(raw, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("SigBlk:")); ok {
			return string(bytes.TrimSpace(v))
		}
	}
	t.Skip("no SigBlk line")
	return ""
}
