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

// Build returns a minimal little-endian x86-64 ELF64 file of type typ: the
// header, a PT_NOTE holding a dummy NT_PRSTATUS and, when files is not
// empty, an NT_FILE note, then one PT_LOAD per segment followed by the
// segments' bytes.
func Build(typ elf.Type, segs []Segment, files []File) []byte {
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
	notes := note(nil, uint32(elf.NT_PRSTATUS), bytes.Repeat([]byte{0xee}, 37))
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
