package memscan

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
)

// SignalFrameOf says whether addr, in the calling process, lies in the FPU
// state of an x86-64 signal frame, found by the FP_XSTATE_MAGIC1 word the
// kernel writes 464 bytes into that state (whose start is 64-byte aligned)
// no more than 4 KiB before addr: past the first 4 KiB of a frame with AMX
// tile data (8 KiB of it), addr reads as in no frame. A copy of a secret
// there was saved from the registers by a signal, not left by the code that
// used them, which tells two causes of a failed scan apart.
func SignalFrameOf(addr uint64) string {
	if runtime.GOARCH != "amd64" {
		return "not attributed off amd64"
	}
	f, err := os.Open("/proc/self/mem")
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	for fx := addr &^ 63; fx+4096 > addr && fx >= 64; fx -= 64 {
		var w [4]byte
		if _, err := f.ReadAt(w[:], int64(fx+464)); err == nil && binary.LittleEndian.Uint32(w[:]) == 0x46505853 {
			return fmt.Sprintf("byte %d of the FPU state of a signal frame at %#x", addr-fx, fx)
		}
	}
	return "in no signal frame"
}
