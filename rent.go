package memshuffle

import (
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/ctr"
	"github.com/memshuffle/memshuffle/internal/osmem"
)

// Rent decrypts the entry in place and returns a pointer to its first
// element as a T. The entry stays decrypted, and never moves, until Return;
// while rented, no other Rent or Free of it succeeds (ErrBusy). The pointer
// must not be used after Return, Free fails on rented entries, and after
// Close the memory is gone. T must hold no Go pointers, be no larger than the
// entry, and need no stricter alignment than the entry was allocated with
// (ErrTypeMismatch).
func Rent[T any](s *Shuffler, h Handle) (*T, error) {
	ti, err := typeOf[T]()
	if err != nil {
		return nil, err
	}
	mem, err := s.rent(h, ti, false)
	if err != nil {
		return nil, err
	}
	return (*T)(unsafe.Pointer(unsafe.SliceData(mem))), nil
}

// RentSlice is Rent for the whole entry as a slice of T. The entry's size
// must be a multiple of T's size (ErrTypeMismatch). The same rules hold for
// the slice as for Rent's pointer; in particular it must not be appended to
// beyond its capacity, which is the entry's size.
func RentSlice[T any](s *Shuffler, h Handle) ([]T, error) {
	ti, err := typeOf[T]()
	if err != nil {
		return nil, err
	}
	mem, err := s.rent(h, ti, true)
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(mem))), len(mem)/ti.size), nil
}

func (s *Shuffler) rent(h Handle, ti typeInfo, whole bool) ([]byte, error) {
	sh, sl, err := s.lookup(h)
	if err != nil {
		return nil, err
	}
	defer sh.mu.Unlock()
	if sl.state() == stateRented {
		return nil, ErrBusy
	}
	size := int(sl.size)
	if ti.size > size || ti.align > sl.align() || (whole && size%ti.size != 0) {
		return nil, ErrTypeMismatch
	}
	mem := sh.bytes(sl)
	sh.ciph.XOR(mem, mem, sl.ctr, sh.scratch)
	sl.setState(stateRented)
	sh.rented++
	return mem, nil
}

// Return re-encrypts a rented entry under a fresh run of counter values, so
// the same plaintext never gives the same ciphertext twice, and ends the
// rent. With shuffle-on-borrow-return enabled the entry also moves to new
// space and the space it left is wiped. Pointers and slices from the rent
// must not be used afterwards.
func (s *Shuffler) Return(h Handle) error {
	sh, sl, err := s.lookup(h)
	if err != nil {
		return err
	}
	defer sh.mu.Unlock()
	if sl.state() != stateRented {
		return ErrNotRented
	}
	base, err := sh.reserve(ctr.Blocks(int(sl.size)))
	if err != nil {
		return err
	}
	src := sh.bytes(sl)
	if s.onReturn.Load() {
		if a, off, err := sh.place(len(src), sl.align()); err == nil {
			// Encrypt straight into the new space: the plaintext is never
			// copied, and its old bytes are wiped.
			dst := a.mem[off : off+len(src)]
			sh.ciph.XOR(dst, src, base, sh.scratch)
			osmem.Wipe(src)
			sh.vacate(sl)
			sl.arena, sl.off = a.index, uint32(off)
			a.live++
			sl.ctr = base
			sl.setState(stateLive)
			sh.rented--
			s.bytesMoved.Add(uint64(len(src)))
			// Compact only while arenas hold more dead space than live data,
			// so entries are not moved for nothing.
			if sh.mapped > 2*sh.liveBytes+int64(2*s.cfg.arenaSize) {
				sh.sweep(sweepSlots)
			}
			return nil
		}
		// No memory for a move: encrypting in place keeps the entry safe;
		// moving it is only a bonus.
	}
	sh.ciph.XOR(src, src, base, sh.scratch)
	sl.ctr = base
	sl.setState(stateLive)
	sh.rented--
	return nil
}
