package memscan

import (
	"encoding/binary"
	"strings"
	"testing"
)

// TestFrameAround finds the saved registers of both frame layouts in a
// synthetic memory, and nothing past them or before the amd64 state.
func TestFrameAround(t *testing.T) {
	const base = 0x10000
	mem := make([]byte, 16<<10)
	read := func(b []byte, at uint64) bool {
		if at < base || at+uint64(len(b)) > base+uint64(len(mem)) {
			return false
		}
		copy(b, mem[at-base:])
		return true
	}
	// amd64: FPU state at base+0x1000, its magic 464 bytes in.
	fx := uint64(base + 0x1000)
	binary.LittleEndian.PutUint32(mem[fx-base+464:], 0x46505853)
	// arm64: an FP/SIMD record at base+0x2010.
	h := uint64(base + 0x2010)
	binary.LittleEndian.PutUint32(mem[h-base:], arm64FPSIMDMagic)
	binary.LittleEndian.PutUint32(mem[h-base+4:], arm64FPSIMDSize)
	for _, c := range []struct {
		arch string
		addr uint64
		in   bool
		says string
	}{
		{"amd64", fx + 160, true, "byte 160 of the FPU state"},
		{"amd64", fx + 4095, true, "of a signal frame at 0x11000"},
		{"amd64", fx + 4096, false, "in no signal frame"},
		{"amd64", fx - 1, false, "in no signal frame"},
		{"arm64", h + 16, true, "byte 0 of V0 of"},
		{"arm64", h + 16 + 9*16 + 3, true, "byte 3 of V9 of"},
		{"arm64", h + arm64FPSIMDSize - 1, true, "byte 15 of V31 of"},
		{"arm64", h + arm64FPSIMDSize, false, "in no signal frame"},
		{"arm64", h + 8, false, "in no signal frame"}, // fpsr, fpcr
		{"arm64", h - 16, false, "in no signal frame"},
		{"arm64", fx + 160, false, "in no signal frame"}, // the other layout
		{"riscv64", h + 16, false, "not attributed on riscv64"},
	} {
		says, in := frameAround(read, c.addr, c.arch)
		if in != c.in || !strings.Contains(says, c.says) {
			t.Errorf("%s at %#x: %q, %v; want %q, %v", c.arch, c.addr, says, in, c.says, c.in)
		}
	}
	// A wrong size in the header is no record.
	binary.LittleEndian.PutUint32(mem[h-base+4:], 0x220)
	if says, in := frameAround(read, h+32, "arm64"); in {
		t.Errorf("a header of size 0x220 read as a record: %q", says)
	}
}
