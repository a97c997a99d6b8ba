package memscan

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

// Core is an ELF core file opened to look at what ScanCore found: the
// memory around a hit, and where each thread was stopped when the dump was
// taken. A Core is safe for concurrent use; Close ends it.
//
// Unlike the scans, a Core reads onto the heap: ReadAt copies into the
// caller's buffer, so callers read pointers and markers with it, not the
// secrets they scanned for.
type Core struct {
	f    *os.File
	ef   *elf.File
	segs []coreSegment
}

// OpenCore opens the ELF core file at path. It returns ErrNotCore when the
// file is not an ELF core file, and wrapped I/O errors.
func OpenCore(path string) (*Core, error) {
	f, ef, segs, err := openCore(path)
	if err != nil {
		return nil, err
	}
	return &Core{f: f, ef: ef, segs: segs}, nil
}

// Close closes the file. Calls after the first return an error.
func (c *Core) Close() error { return c.f.Close() }

// ReadAt fills p with the memory of the dumped process at address addr. It
// returns ErrNotDumped when any byte of the range lies outside the bytes
// the file stores (a gap between segments, a segment's tail beyond its
// Filesz, a truncated file), with p then partly written, and wrapped I/O
// errors.
func (c *Core) ReadAt(p []byte, addr uint64) error {
	for len(p) > 0 {
		i := sort.Search(len(c.segs), func(i int) bool { return c.segs[i].End > addr })
		if i == len(c.segs) || addr < c.segs[i].Start || addr-c.segs[i].Start >= c.segs[i].filesz {
			return fmt.Errorf("%w: %#x", ErrNotDumped, addr)
		}
		s := c.segs[i]
		rel := addr - s.Start
		n := min(uint64(len(p)), s.filesz-rel)
		if _, err := c.f.ReadAt(p[:n], int64(s.off+rel)); errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: %#x (truncated core)", ErrNotDumped, addr)
		} else if err != nil {
			return fmt.Errorf("memscan: %w", err)
		}
		p, addr = p[n:], addr+n
	}
	return nil
}

// uint64At reads the little-endian word at addr.
func (c *Core) uint64At(addr uint64) (uint64, error) {
	var b [8]byte
	err := c.ReadAt(b[:], addr)
	return binary.LittleEndian.Uint64(b[:]), err
}

// Thread is where one thread of a dumped process was stopped.
type Thread struct {
	TID      int    // the kernel's thread id (pr_pid of its NT_PRSTATUS)
	RIP, RSP uint64 // its instruction and stack pointers
}

// The x86-64 layout of struct elf_prstatus: pr_pid, then pr_reg, a struct
// user_regs_struct (r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi
// rdi orig_rax rip cs eflags rsp ss fs_base gs_base ds es fs gs), then
// pr_fpvalid.
const (
	prstatusPID  = 32
	prstatusRIP  = 112 + 16*8
	prstatusRSP  = 112 + 19*8
	prstatusSize = 112 + 27*8 + 8
)

// Threads returns the threads of the core in the order of their
// NT_PRSTATUS notes (Linux writes the thread that dumped, or the first,
// first). Only x86-64 cores are understood: another machine returns
// ErrCoreArch. A core without NT_PRSTATUS notes returns none; one whose
// note is too short for the x86-64 layout, or whose notes the file holds
// only part of (a truncated core), returns ErrNotCore. Only the
// thread id and the two pointers are read: the other registers are not
// copied onto the heap.
func (c *Core) Threads() ([]Thread, error) {
	if err := c.checkArch(); err != nil {
		return nil, err
	}
	st, err := c.f.Stat()
	if err != nil {
		return nil, fmt.Errorf("memscan: %w", err)
	}
	fileSize := uint64(max(st.Size(), 0))
	var ts []Thread
	for _, pr := range c.ef.Progs {
		if pr.Type != elf.PT_NOTE || err != nil {
			continue
		}
		// A thread missing from the list would make every frame it is
		// running under look left behind (SignalFrame.HandledBy): notes
		// cut short refuse the list rather than shorten it.
		if storedLen(pr.Off, pr.Filesz, fileSize) < pr.Filesz {
			return nil, fmt.Errorf("%w: notes at %#x cut short (truncated core)", ErrNotCore, pr.Off)
		}
		align := uint64(4)
		if pr.Align == 8 {
			align = 8
		}
		r := noteReader(pr, fileSize)
		walkNotes(r, c.ef.ByteOrder, align, func(typ uint32, off, size uint64) bool {
			if typ != uint32(elf.NT_PRSTATUS) {
				return true
			}
			if size < prstatusSize {
				err = fmt.Errorf("%w: NT_PRSTATUS of %d bytes, want %d", ErrNotCore, size, prstatusSize)
				return false
			}
			var w [8]byte
			word := func(at uint64) uint64 {
				if _, rerr := r.ReadAt(w[:], int64(off+at)); rerr != nil && err == nil {
					err = fmt.Errorf("memscan: NT_PRSTATUS: %w", rerr)
				}
				return binary.LittleEndian.Uint64(w[:])
			}
			ts = append(ts, Thread{
				TID: int(int32(word(prstatusPID))),
				RIP: word(prstatusRIP),
				RSP: word(prstatusRSP),
			})
			return err == nil
		})
	}
	if err != nil {
		return nil, err
	}
	return ts, nil
}

// checkArch returns ErrCoreArch unless the core is of an x86-64 process.
func (c *Core) checkArch() error {
	if c.ef.Machine != elf.EM_X86_64 || c.ef.Class != elf.ELFCLASS64 || c.ef.ByteOrder != binary.LittleEndian {
		return fmt.Errorf("%w: %v", ErrCoreArch, c.ef.Machine)
	}
	return nil
}
