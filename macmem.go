package memshuffle

import (
	"hash"
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// While a MAC runs, its two hashes hold states derived from the key (each
// one compression away from key XOR ipad or key XOR opad, and together
// enough to forge a MAC of any message), and its pad holds those blocks
// themselves for a moment. On the Go heap they are caught by a dump of a
// busy process: with the pad and the hashes there, TestMACInFlightPads
// found a pad in 1 to 4 of 8 dumps of a process MACing on three
// goroutines, in each of 3 runs, though MAC wipes all of it before it
// returns. So MAC computes in a slot of macMem: memory mapped outside the
// Go heap and, as the arenas are where the system allows it, left out of
// core dumps and given to a forked child as zeros. A hash of the standard
// library's SHA-256 or SHA-512 is copied there as it comes from h, a
// state with nothing of the key yet, and used there; a hash of another
// kind (the caller's own code, which may keep pointers) stays where h
// made it, and the pad with it.
//
// macMem is not locked, as the inbox is not: locked memory is the
// arenas', and under the 64 KiB limit of older kernels 48 KiB locked for
// the life of the process left a strictly locked Shuffler room for 16
// entries of 32 bytes instead of 1,072. Its pages hold something only
// while a MAC runs.

// macSlotSize is one slot: two hash states of up to macStateSize bytes
// and a pad of up to a block of the largest standard hash.
const (
	macStateSize = 256 // crypto/sha512's digest: 216 bytes
	macPadSize   = 256 // SHA-512's block: 128 bytes
	macSlotSize  = 2*macStateSize + macPadSize
)

// macSlots is how many MACs compute in macMem at once. A MAC with the
// standard hashes and a message of up to 256 KiB runs pinned, so at most
// GOMAXPROCS of those are under way; one that finds every slot taken
// computes on the Go heap, as a MAC with another hash does.
const macSlots = 64

// macMem is the process's *macMemory, mapped by the first MAC that uses
// it; nil until then, or when the mapping was refused, which is not tried
// again: MACs then compute on the heap.
var macMem atomic.Pointer[macMemory]

var macMemOnce sync.Once

type macMemory struct {
	data     []byte
	busy     [macSlots]atomic.Uint32
	next     atomic.Uint32 // where the search for a free slot starts
	dumpable bool          // the system refused to exclude data from core dumps
}

// macScratch is a MAC's slot: its hashes, of the caller's types, with
// their states in the slot, and its pad.
type macScratch struct {
	inner, outer hash.Hash
	pad          []byte
	mem          *macMemory
	i            int
}

// takeMACScratch moves inner and outer, two new hashes of block size bs,
// into a free slot of macMem and returns it, or false when either is of a
// type that does not move, the memory is not mapped, or every slot is
// taken; give the slot back with free.
func takeMACScratch(inner, outer hash.Hash, bs int) (macScratch, bool) {
	ti, to := reflect.TypeOf(inner), reflect.TypeOf(outer)
	if !movableHashes[ti] || !movableHashes[to] || bs > macPadSize {
		return macScratch{}, false
	}
	m := mapMACMem()
	if m == nil {
		return macScratch{}, false
	}
	start := m.next.Add(1)
	for k := range uint32(macSlots) {
		// In uint32: a 32-bit int made the index negative from the 2^31st MAC on.
		i := int((start + k) % macSlots)
		if !m.busy[i].CompareAndSwap(0, 1) {
			continue
		}
		slot := m.data[i*macSlotSize : (i+1)*macSlotSize]
		return macScratch{
			inner: hashAt(inner, slot[:macStateSize]),
			outer: hashAt(outer, slot[macStateSize:2*macStateSize]),
			pad:   slot[2*macStateSize:][:bs],
			mem:   m,
			i:     i,
		}, true
	}
	return macScratch{}, false
}

// free wipes the slot, hash states and all, and gives it back.
func (sc *macScratch) free() {
	Wipe(sc.mem.data[sc.i*macSlotSize : (sc.i+1)*macSlotSize])
	sc.mem.busy[sc.i].Store(0)
}

// mapMACMem returns macMem, mapping it on first use.
func mapMACMem() *macMemory {
	macMemOnce.Do(func() {
		r, err := osmem.Map(macSlots*macSlotSize, osmem.Flags{SmallPages: true})
		if err == nil {
			macMem.Store(&macMemory{data: r.Data, dumpable: !r.DontDump})
		}
	})
	return macMem.Load()
}

// movableHashes are the hash types whose states MAC moves into macMem:
// those of pinnedHashes, the standard library's, that are pointers to
// structs free of pointers (memory the collector does not scan must hold
// none) and fit in a slot. Another Go release could make them otherwise;
// they then stay on the heap.
var movableHashes = func() map[reflect.Type]bool {
	m := make(map[reflect.Type]bool)
	for t := range pinnedHashes {
		if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct &&
			t.Elem().Size() <= macStateSize && t.Elem().Align() <= 64 && pointerIn(t.Elem(), "") == "" {
			m[t] = true
		}
	}
	return m
}()

// hashAt returns a hash of h's type, one of movableHashes, whose state is
// at mem, a copy of h's.
func hashAt(h hash.Hash, mem []byte) hash.Hash {
	v := reflect.ValueOf(h)
	at := reflect.NewAt(v.Type().Elem(), unsafe.Pointer(unsafe.SliceData(mem)))
	at.Elem().Set(v.Elem())
	return at.Interface().(hash.Hash)
}
