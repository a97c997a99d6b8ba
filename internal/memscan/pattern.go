package memscan

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
)

// MaxPatternLen is the longest pattern accepted, in bytes. Consecutive reads
// overlap by one byte less than the pattern, so it has to stay well below the
// size of the read buffer.
const MaxPatternLen = 64 << 10

// Pattern is a byte string to search for, kept in a form that never equals
// the string: every byte is XORed with a random mask byte chosen to differ
// from both 0 and the plaintext byte, so the masked copy and the mask each
// differ from the plaintext in every position, and a scan of the scanner's
// own process does not find its own pattern there. (Shifted, they agree
// with it no more often than random bytes do.)
//
// A Pattern is immutable once made, and safe for concurrent use by any
// number of scans.
type Pattern struct {
	masked []byte // plaintext XOR mask
	mask   []byte

	// The prefilter is a cyclic-polynomial rolling hash ("buzhash") keyed
	// by a random table: the hash of a window is the XOR of its bytes' table
	// entries, each rotated by its distance from the window's end. Rolling
	// costs a rotate and two XORs per byte, with no multiply on the critical
	// path, and neither the hash nor the table says anything useful about
	// the plaintext without the other. Equal hashes are only candidates;
	// equalAt decides.
	hash uint64
	in   [256]uint64 // contribution of a byte entering the window
	out  [256]uint64 // in, rotated by Len: what a leaving byte takes back

	// zero is the one bit of the plaintext kept as such: whether every
	// byte is zero. Any other pattern cannot match a window of zeros, so
	// the scanner skips the zero-filled stretches of memory for it; an
	// all-zero pattern matches exactly there and gets the plain scan.
	zero bool
}

// NewPattern returns a Pattern matching the bytes of p. It does not keep p
// or any verbatim copy of it: the caller owns p and should wipe it once
// NewPattern returns. It returns ErrEmptyPattern for an empty p and
// ErrPatternTooLong when len(p) > MaxPatternLen.
func NewPattern(p []byte) (*Pattern, error) {
	if len(p) == 0 {
		return nil, ErrEmptyPattern
	}
	if len(p) > MaxPatternLen {
		return nil, ErrPatternTooLong
	}
	pt := &Pattern{masked: make([]byte, len(p)), mask: make([]byte, len(p))}

	var seed [8 * 256]byte
	rand.Read(seed[:]) // never fails since Go 1.24; it crashes the program instead
	rot := len(p) % 64
	for i := range pt.in {
		pt.in[i] = binary.LittleEndian.Uint64(seed[8*i:])
		pt.out[i] = bits.RotateLeft64(pt.in[i], rot)
	}

	// Rejection sampling: a mask byte of 0 would store the plaintext byte
	// itself, one equal to the plaintext byte would store it in the mask.
	pool := make([]byte, len(p)+64)
	rand.Read(pool)
	j := 0
	for i, c := range p {
		for {
			if j == len(pool) {
				rand.Read(pool)
				j = 0
			}
			m := pool[j]
			j++
			if m != 0 && m != c {
				pt.mask[i] = m
				break
			}
		}
	}
	clear(pool)

	var h uint64
	var or byte
	for i, c := range p {
		h = bits.RotateLeft64(h, 1) ^ pt.in[c]
		pt.masked[i] = c ^ pt.mask[i]
		or |= c
	}
	pt.hash = h
	pt.zero = or == 0
	return pt, nil
}

// ReadPattern reads r to EOF and returns the Pattern of what it read. The
// bytes go straight from r.Read into scratch memory mapped outside the Go
// heap, which is wiped and unmapped before ReadPattern returns, so the
// plaintext does not reach the heap through this function; whatever r
// buffers on its own (a bufio.Reader, a bytes.Reader's source) is the
// caller's to avoid. Use it to take a secret from a file, a pipe or a
// hex.Decoder without an io.ReadAll copy.
//
// It returns ErrEmptyPattern when r yields nothing, ErrPatternTooLong when
// r yields more than MaxPatternLen bytes, the read error of r wrapped, and
// ErrUnsupported where memory cannot be mapped.
func ReadPattern(r io.Reader) (_ *Pattern, err error) {
	buf, err := mapBuffer(MaxPatternLen + 1)
	if err != nil {
		return nil, err
	}
	defer func() {
		clear(buf)
		if uerr := unmapBuffer(buf); uerr != nil && err == nil {
			err = uerr
		}
	}()

	n, stalls := 0, 0
	for n < len(buf) {
		m, rerr := r.Read(buf[n:])
		n += m
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("memscan: reading pattern: %w", rerr)
		}
		if m > 0 {
			stalls = 0
		} else if stalls++; stalls == 100 {
			return nil, fmt.Errorf("memscan: reading pattern: %w", io.ErrNoProgress)
		}
	}
	if n > MaxPatternLen {
		return nil, ErrPatternTooLong
	}
	return NewPattern(buf[:n])
}

// Len returns the length of the pattern in bytes, 0 for a nil Pattern.
func (p *Pattern) Len() int {
	if p == nil {
		return 0
	}
	return len(p.masked)
}

// check returns ErrEmptyPattern for a nil or zero Pattern.
func (p *Pattern) check() error {
	if p.Len() == 0 {
		return ErrEmptyPattern
	}
	return nil
}

// matches calls yield with the offset of every occurrence of p in data,
// overlapping ones included, in increasing order.
func (p *Pattern) matches(data []byte, yield func(off int)) {
	p.matchesAt(data, 0, len(data)-p.Len()+1, yield)
}

// matchesAt calls yield, in increasing order, with every offset off in
// [lo, hi) at which data holds an occurrence of p. It reads data[lo :
// hi+Len()-1], so hi must be at most len(data)-Len()+1; an empty range
// reads nothing.
func (p *Pattern) matchesAt(data []byte, lo, hi int, yield func(off int)) {
	n := len(p.masked)
	if n == 0 || lo < 0 || lo >= hi {
		return
	}
	data = data[lo : hi+n-1]
	in, out, want := &p.in, &p.out, p.hash
	var h uint64
	for _, c := range data[:n] {
		h = bits.RotateLeft64(h, 1) ^ in[c]
	}
	if h == want && p.equalAt(data) {
		yield(lo)
	}
	// Window i+1 is data[i+1 : i+1+n]: leaving[i] drops out as entering[i]
	// comes in. Slicing both to the same length lets the compiler drop the
	// bounds checks from the loop.
	leaving := data[:len(data)-n]
	entering := data[n:]
	entering = entering[:len(leaving)]
	for i, c := range entering {
		h = bits.RotateLeft64(h, 1) ^ out[leaving[i]] ^ in[c]
		if h == want && p.equalAt(data[i+1:]) {
			yield(lo + i + 1)
		}
	}
}

// equalAt reports whether w starts with the pattern. It compares w[i]^mask[i]
// with masked[i], which is equivalent to w[i] == plaintext[i] but never
// reconstructs a plaintext byte in memory.
func (p *Pattern) equalAt(w []byte) bool {
	m := p.masked
	k := p.mask[:len(m)]
	w = w[:len(m)]
	for i := range m {
		if w[i]^k[i] != m[i] {
			return false
		}
	}
	return true
}

// checkAll checks every pattern of ps.
func checkAll(ps []*Pattern) error {
	for _, p := range ps {
		if err := p.check(); err != nil {
			return err
		}
	}
	return nil
}

// first returns the hits of the only pattern of a one-pattern scan.
func first(hits [][]Hit, err error) ([]Hit, error) {
	if len(hits) == 0 {
		return nil, err
	}
	return hits[0], err
}
