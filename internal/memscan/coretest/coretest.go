// Package coretest builds small ELF64 core files for the tests of code that
// reads them: memscan's own and the memshuffle command's.
package coretest

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
)

// Segment is one PT_LOAD segment.
type Segment struct {
	Vaddr uint64
	Flags elf.ProgFlag
	Data  []byte // the bytes in the file: Filesz = len(Data)
	Memsz uint64 // 0 means len(Data)
}

// File is one entry of the NT_FILE note, which names the files mapped.
type File struct {
	Start, End, Pgoff uint64 // Pgoff in 4096-byte pages
	Name              string
}

// ntFile is NT_FILE, which debug/elf does not name.
const ntFile = 0x46494c45

// Thread is one NT_PRSTATUS note: a thread id and the two registers
// memscan reads, in the x86-64 layout; every other register is zero.
type Thread struct {
	TID      int
	RIP, RSP uint64
}

// Build returns a minimal little-endian x86-64 ELF64 file of type typ: the
// header, a PT_NOTE holding a dummy NT_PRSTATUS and, when files is not
// empty, an NT_FILE note, then one PT_LOAD per segment followed by the
// segments' bytes.
func Build(typ elf.Type, segs []Segment, files []File) []byte {
	return BuildThreads(typ, segs, files, nil)
}

// BuildThreads is Build with one well-formed NT_PRSTATUS note per thread
// in place of the dummy one, when threads is not empty.
func BuildThreads(typ elf.Type, segs []Segment, files []File, threads []Thread) []byte {
	le := binary.LittleEndian
	note := func(b []byte, typ uint32, desc []byte) []byte {
		b = le.AppendUint32(b, 5)
		b = le.AppendUint32(b, uint32(len(desc)))
		b = le.AppendUint32(b, typ)
		b = append(b, "CORE\x00\x00\x00\x00"...)
		b = append(b, desc...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	var notes []byte
	if len(threads) == 0 {
		notes = note(nil, uint32(elf.NT_PRSTATUS), bytes.Repeat([]byte{0xee}, 37))
	}
	for _, t := range threads {
		// struct elf_prstatus on x86-64: pr_pid at 32, pr_reg (27
		// words, rip the 17th, rsp the 20th) at 112, pr_fpvalid.
		desc := make([]byte, 336)
		le.PutUint32(desc[32:], uint32(t.TID))
		le.PutUint64(desc[112+16*8:], t.RIP)
		le.PutUint64(desc[112+19*8:], t.RSP)
		notes = note(notes, uint32(elf.NT_PRSTATUS), desc)
	}
	if len(files) > 0 {
		var desc []byte
		desc = le.AppendUint64(desc, uint64(len(files)))
		desc = le.AppendUint64(desc, 4096)
		for _, f := range files {
			desc = le.AppendUint64(desc, f.Start)
			desc = le.AppendUint64(desc, f.End)
			desc = le.AppendUint64(desc, f.Pgoff)
		}
		for _, f := range files {
			desc = append(desc, f.Name...)
			desc = append(desc, 0)
		}
		notes = note(notes, ntFile, desc)
	}

	const ehsize, phentsize = 64, 56
	phnum := 1 + len(segs)
	off := uint64(ehsize + phentsize*phnum)
	progs := []elf.Prog64{{Type: uint32(elf.PT_NOTE), Off: off, Filesz: uint64(len(notes)), Align: 4}}
	off += uint64(len(notes))
	for _, s := range segs {
		memsz := s.Memsz
		if memsz == 0 {
			memsz = uint64(len(s.Data))
		}
		progs = append(progs, elf.Prog64{
			Type: uint32(elf.PT_LOAD), Flags: uint32(s.Flags), Off: off,
			Vaddr: s.Vaddr, Filesz: uint64(len(s.Data)), Memsz: memsz, Align: 4096,
		})
		off += uint64(len(s.Data))
	}
	hdr := elf.Header64{
		Type: uint16(typ), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Phoff: ehsize, Ehsize: ehsize, Phentsize: phentsize, Phnum: uint16(phnum),
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)

	var b bytes.Buffer
	// Writes to a bytes.Buffer of fixed-size values cannot fail.
	_ = binary.Write(&b, le, hdr)
	_ = binary.Write(&b, le, progs)
	b.Write(notes)
	for _, s := range segs {
		b.Write(s.Data)
	}
	return b.Bytes()
}

// PutSignalFrame writes into stack, the bytes of a signal stack that starts
// at address base, the parts of an x86-64 signal frame that memscan reads,
// where Linux's get_sigframe puts the frame of a signal that finds the
// thread off that stack: the FPU state, fpSize bytes, at
// round_down(top-fpSize, 64), with FP_XSTATE_MAGIC1 and fpSize at 464 and
// 468; the rt_sigframe (440 bytes) below it at round_down(fpstate-440,
// 16)-8, with uc_stack naming the stack and the interrupted rip and rsp.
// It returns the addresses of the frame and of its FPU state.
func PutSignalFrame(stack []byte, base uint64, fpSize uint32, rip, rsp uint64) (frame, fpstate uint64) {
	le := binary.LittleEndian
	top := base + uint64(len(stack))
	fpstate = (top - uint64(fpSize)) &^ 63
	frame = (fpstate-440)&^15 - 8
	at := func(addr uint64) []byte { return stack[addr-base:] }
	le.PutUint32(at(fpstate+464), 0x46505853)
	le.PutUint32(at(fpstate+468), fpSize)
	le.PutUint64(at(frame+24), base)
	le.PutUint64(at(frame+40), uint64(len(stack)))
	le.PutUint64(at(frame+48+15*8), rsp)
	le.PutUint64(at(frame+48+16*8), rip)
	le.PutUint64(at(frame+48+23*8), fpstate)
	return frame, fpstate
}
