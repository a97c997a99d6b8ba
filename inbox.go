package memshuffle

import (
	"sync"
	"sync/atomic"

	"github.com/memshuffle/memshuffle/internal/aesctr"
	"github.com/memshuffle/memshuffle/internal/osmem"
)

// A secret the caller passes in memory of its own (CopyFrom's src,
// RotateKey's key and salt) often sits in the caller's stack frame: the
// compiler keeps a [32]byte or a small make([]byte, n) there when it does
// not escape. Any call that needs more stack than is left makes the runtime
// copy the whole stack, that frame included, to a larger one and free the
// old one as it is, with the secret in it, where no wipe reaches; a
// collection may do the same to shrink the stack at the next stack check.
// CopyFrom and RotateKey go deep enough to do that often (in
// TestCallerStackSecretNotLeft, 43 of 200 CopyFrom calls and 77 of 200
// RotateKey calls from new goroutines at increasing depths moved their
// stack), and then wiped only the new copy.
//
// So they first move the secret into the inbox, a slot of memory mapped
// outside the Go heap and left out of core dumps, and wipe the caller's
// bytes, in nosplit code that runs no stack check and so cannot grow or
// shrink the stack: what the runtime copies afterwards is zeros. The
// secret is taken out of its slot as soon as the call can use it, and the
// slot wiped. A call made with the caller's stack already at its limit can
// still grow it on entry, before any of this runs; nothing inside the
// library can prevent that.

// inboxSlotSize is the longest secret the inbox takes: Go keeps variables
// of up to 64 KiB on the stack, but keys and tokens, what CopyFrom and
// RotateKey are given in practice, are far shorter. A longer one is copied
// from where it is.
const inboxSlotSize = 4 << 10

// inboxSlots is how many calls can use the inbox at once; one that finds
// every slot taken copies from where the secret is.
const inboxSlots = 4

// inbox is the process's inbox, mapped by the first New; nil until then,
// or if the mapping was refused.
var inbox atomic.Pointer[inboxMem]

var inboxOnce sync.Once

type inboxMem struct {
	data []byte // inboxSlots slots of inboxSlotSize bytes
	busy [inboxSlots]atomic.Bool
}

// mapInbox maps the inbox. It is not locked: a secret stays in it for
// microseconds, and locked memory is what the Shufflers' arenas need.
func mapInbox() {
	inboxOnce.Do(func() {
		aesctr.ChooseGuard()
		r, err := osmem.Map(inboxSlots*inboxSlotSize, osmem.Flags{SmallPages: true})
		if err == nil {
			inbox.Store(&inboxMem{data: r.Data})
		}
	})
}

// toInbox moves src into a free slot of the inbox and wipes src, and
// returns the slot; or, when src is empty or too long, the inbox is not
// mapped, every slot is taken or the guarded copy cannot run yet, it
// returns -1 and leaves src as it is. It runs no stack check.
//
//go:nosplit
func toInbox(src []byte) int {
	ib := inbox.Load()
	if ib == nil || len(src) == 0 || len(src) > inboxSlotSize {
		return -1
	}
	for i := range inboxSlots {
		if !ib.busy[i].CompareAndSwap(false, true) {
			continue
		}
		slot := ib.data[i*inboxSlotSize : (i+1)*inboxSlotSize]
		if !aesctr.CopyNoSplit(slot, src) {
			ib.busy[i].Store(false)
			return -1
		}
		clear(src)
		return i
	}
	return -1
}

// inboxSlot returns the first n bytes of slot i.
func inboxSlot(i, n int) []byte {
	return inbox.Load().data[i*inboxSlotSize : i*inboxSlotSize+n]
}

// freeInbox wipes the first n bytes of slot i and gives the slot back.
func freeInbox(i, n int) {
	ib := inbox.Load()
	Wipe(ib.data[i*inboxSlotSize : i*inboxSlotSize+n])
	ib.busy[i].Store(false)
}
