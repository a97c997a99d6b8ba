//go:build linux || windows

package memscan

import (
	"os"
	"unsafe"
)

// scanLive is the part of ScanProcessAll that Linux and Windows share: it
// streams the memory of process pid, whose mappings ms are in address order,
// through one off-heap buffer and returns the hits of each pattern. For
// mapping i, populated yields the ranges worth reading (pages the process
// has touched, or may read); read fetches memory. Contiguous mappings are
// read as one stream, so a match may straddle two of them.
func scanLive(pid int, ps []*Pattern, ms []Mapping, populated func(i int, yield func(a, b uint64) error) error, read readFunc) (_ [][]Hit, err error) {
	hits := make([][]Hit, len(ps))
	if len(ps) == 0 {
		return hits, nil
	}
	buf, err := mapBuffer(readBufSize)
	if err != nil {
		return nil, err
	}
	defer func() {
		if uerr := unmapBuffer(buf); uerr != nil && err == nil {
			err = uerr
		}
	}()
	// Scanning itself, the scanner must not find the copy in its buffer.
	var skip span
	if pid == os.Getpid() {
		at := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
		skip = span{at, at + uint64(len(buf))}
	}

	rs := newPadRanges(ps, skip)
	sc := &chunkScanner{
		ps:       ps,
		buf:      buf,
		pageSize: uint64(os.Getpagesize()),
		read:     read,
		hit: func(i int, addr uint64) {
			if !rs.keep(ps[i].Len(), addr) {
				return
			}
			m, _ := mappingAt(ms, addr)
			hits[i] = append(hits[i], Hit{Addr: addr, Mapping: m})
		},
	}
	var runs []span
	for i := 0; i < len(ms); {
		j := i + 1
		for j < len(ms) && ms[j].Start == ms[j-1].End {
			j++
		}
		runs = runs[:0]
		for k := i; k < j; k++ {
			err := populated(k, func(a, b uint64) error {
				runs = append(runs, span{a, b})
				return nil
			})
			if err != nil {
				return hits, err
			}
		}
		for _, r := range rs.block(ms[i].Start, ms[j-1].End, runs) {
			if err := sc.scanRange(r.start, r.end); err != nil {
				return hits, err
			}
		}
		i = j
	}
	return hits, nil
}
