package memshuffle

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/stackscrub"
)

// A secret the caller passes in memory of its own (CopyFrom's src,
// RotateKey's key and salt) often sits in the caller's stack frame: the
// compiler keeps a [32]byte or a small make([]byte, n) there when it does
// not escape. Any call that needs more stack than is left makes the runtime
// copy the whole stack, that frame included, to a larger one and free the
// old one as it is, with the secret in it, where no wipe reaches; a
// collection may do the same to shrink the stack at the next stack check.
// CopyFrom and RotateKey go deep enough to do that often (in
// TestCallerStackSecretNotLeft, 16 of the first 20 CopyFrom calls and each
// of the first 16 RotateKey calls, from new goroutines at increasing
// depths, moved their stack), and then wiped only the new copy.
//
// So when the secret is on the calling goroutine's stack (amd64, arm64 and
// 32-bit arm, where stackscrub.OnStack can tell), they first move it into the inbox,
// a slot of memory mapped outside the Go heap and left out of core dumps,
// and wipe the caller's bytes, in nosplit code that runs no stack check
// and so cannot grow or shrink the stack: what the runtime copies
// afterwards is zeros. The slot is wiped and given back when the call is
// done with it: at the end of CopyFrom, or of the rotation. A secret
// elsewhere (heap, entry) is read where it is, as before; no stack copies
// it. A call made with the caller's stack already at its limit can still
// grow it on entry, before any of this runs; nothing inside the library
// can prevent that.
//
// The code before the wipe uses the atomic functions, not the methods of
// sync/atomic's types: in a race build the functions are nosplit
// assembly, the methods calls that check the stack.

// inboxSlotSize is the longest secret the inbox takes: Go keeps variables
// of up to 64 KiB on the stack, but keys and tokens, what CopyFrom and
// RotateKey are given in practice, are far shorter. A longer one is copied
// from where it is.
const inboxSlotSize = 4 << 10

// inboxSlots is how many secrets the inbox holds at once (a rotation takes
// two, its key and salt, for as long as it runs); a call that finds every
// slot taken copies from where the secret is.
const inboxSlots = 8

// inbox is the process's *inboxMem, mapped by the first New; nil until
// then, or if the mapping was refused. Read with atomic.LoadPointer.
var inbox unsafe.Pointer

var inboxOnce sync.Once

type inboxMem struct {
	data     []byte             // inboxSlots slots of inboxSlotSize bytes
	busy     [inboxSlots]uint32 // 1 while a slot is taken; atomic
	dumpable bool               // the system refused to exclude data from core dumps
}

// mapInbox maps the inbox. It is not locked: locked memory is what the
// Shufflers' arenas need, and a secret stays in it for a call.
func mapInbox() {
	inboxOnce.Do(func() {
		aesctr.ChooseGuard()
		r, err := osmem.Map(inboxSlots*inboxSlotSize, osmem.Flags{SmallPages: true})
		if err == nil {
			atomic.StorePointer(&inbox, unsafe.Pointer(&inboxMem{data: r.Data, dumpable: !r.DontDump}))
		}
	})
}

// toInbox moves src into a free slot of the inbox and wipes src, and
// returns the slot, when src is on the calling goroutine's stack; or, when
// it is not, is empty or too long, the inbox is not mapped, every slot is
// taken or the guarded copy cannot run yet, it returns -1 and leaves src as
// it is. It runs no stack check.
//
//go:nosplit
func toInbox(src []byte) int {
	ib := (*inboxMem)(atomic.LoadPointer(&inbox))
	if ib == nil || len(src) == 0 || len(src) > inboxSlotSize || !stackscrub.OnStack(unsafe.Pointer(&src[0])) {
		return -1
	}
	for i := range inboxSlots {
		if !atomic.CompareAndSwapUint32(&ib.busy[i], 0, 1) {
			continue
		}
		if !aesctr.CopyNoSplit(ib.slot(i), src) {
			atomic.StoreUint32(&ib.busy[i], 0)
			return -1
		}
		clear(src)
		return i
	}
	return -1
}

// slot returns slot i. It runs no stack check.
//
//go:nosplit
func (ib *inboxMem) slot(i int) []byte {
	return ib.data[i*inboxSlotSize : (i+1)*inboxSlotSize]
}

// inboxSlot returns the first n bytes of slot i.
func inboxSlot(i, n int) []byte {
	return (*inboxMem)(atomic.LoadPointer(&inbox)).slot(i)[:n]
}

// freeInbox wipes the first n bytes of slot i and gives the slot back.
func freeInbox(i, n int) {
	Wipe(inboxSlot(i, n))
	atomic.StoreUint32(&(*inboxMem)(atomic.LoadPointer(&inbox)).busy[i], 0)
}
