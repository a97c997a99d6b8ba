package memscan

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
)

// SignalFrameOf says whether addr, in the calling process, lies in the
// registers a signal frame saved, which tells two causes of a failed scan
// apart: a copy of a secret there was saved from the registers by a signal,
// not left by the code that used them. On amd64 it is the FPU state of the
// frame, found by the FP_XSTATE_MAGIC1 word the kernel writes 464 bytes
// into that state (whose start is 64-byte aligned) no more than 4 KiB
// before addr: past the first 4 KiB of a frame with AMX tile data (8 KiB of
// it), addr reads as in no frame. On arm64 it is the vector registers of
// the frame's FP/SIMD record, found by that record's header (magic
// 0x46508001, size 0x210) at most 528 bytes before addr, 16-byte aligned.
// Elsewhere it attributes nothing.
func SignalFrameOf(addr uint64) string {
	where, _ := selfFrame(addr)
	return where
}

// InSignalFrame reports whether addr, in the calling process, lies in the
// registers a signal frame saved, as SignalFrameOf finds them.
func InSignalFrame(addr uint64) bool {
	_, in := selfFrame(addr)
	return in
}

// selfFrame is frameAround in the calling process's memory.
func selfFrame(addr uint64) (string, bool) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		return "not attributed off amd64 and arm64", false
	}
	f, err := os.Open("/proc/self/mem")
	if err != nil {
		return err.Error(), false
	}
	defer f.Close()
	return frameAround(func(b []byte, at uint64) bool {
		_, err := f.ReadAt(b, int64(at))
		return err == nil
	}, addr, runtime.GOARCH)
}

// The FP/SIMD record of an arm64 signal frame (struct fpsimd_context): an
// 8-byte header, fpsr and fpcr, then V0-V31.
const (
	arm64FPSIMDMagic = 0x46508001
	arm64FPSIMDSize  = 0x210
	arm64VRegsOff    = 16
)

// frameAround finds the signal frame whose saved registers hold addr, for
// the layout of arch, reading memory through read (false: unreadable). It
// says where addr lies, and whether it is in such registers.
func frameAround(read func(b []byte, at uint64) bool, addr uint64, arch string) (string, bool) {
	var w [8]byte
	switch arch {
	case "amd64":
		for fx := addr &^ 63; fx+4096 > addr && fx >= 64; fx -= 64 {
			if read(w[:4], fx+464) && binary.LittleEndian.Uint32(w[:4]) == 0x46505853 {
				return fmt.Sprintf("byte %d of the FPU state of a signal frame at %#x", addr-fx, fx), true
			}
		}
	case "arm64":
		for h := addr &^ 15; h+arm64FPSIMDSize > addr && h >= 16; h -= 16 {
			if read(w[:], h) && binary.LittleEndian.Uint32(w[:4]) == arm64FPSIMDMagic &&
				binary.LittleEndian.Uint32(w[4:]) == arm64FPSIMDSize {
				if addr < h+arm64VRegsOff {
					break // the record's header, fpsr or fpcr: no register's bytes
				}
				v := addr - h - arm64VRegsOff
				return fmt.Sprintf("byte %d of V%d of the FP/SIMD record of a signal frame at %#x", v%16, v/16, h), true
			}
		}
	default:
		return "not attributed on " + arch, false
	}
	return "in no signal frame", false
}
