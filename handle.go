package memshuffle

import (
	"fmt"

	"github.com/memshuffle/memshuffle/internal/store"
)

// Handle refers to one entry of one Shuffler. It is an opaque, comparable
// value: copy it, compare it, keep it in maps. The zero Handle is never
// valid. A Handle stays valid until its entry is freed or the Shuffler is
// closed, whatever moves the entry makes; once freed, no later entry is ever
// given an equal Handle.
type Handle struct {
	owner uint64 // the issuing Shuffler's random, non-zero identity
	id    uint64 // shard<<56 | slot<<24 | generation
}

const (
	genBits   = store.GenBits // a slot is retired before its generation needs more
	genMask   = 1<<genBits - 1
	slotBits  = 32
	shardBits = 8
	maxShards = 1 << shardBits
)

func makeHandle(owner uint64, shard, slot, gen uint32) Handle {
	return Handle{owner: owner, id: uint64(shard)<<(slotBits+genBits) | uint64(slot)<<genBits | uint64(gen)}
}

func (h Handle) shard() uint32 { return uint32(h.id >> (slotBits + genBits)) }
func (h Handle) slot() uint32  { return uint32(h.id >> genBits) }
func (h Handle) gen() uint32   { return uint32(h.id & genMask) }

// IsZero reports whether h is the zero Handle.
func (h Handle) IsZero() bool { return h == Handle{} }

// String describes h without revealing anything about the entry's contents
// or address: the issuing Shuffler's identity (a random number, no secret),
// then the shard, slot and generation, so that Handles of different
// Shufflers print differently, as they compare unequal.
func (h Handle) String() string {
	if h.IsZero() {
		return "memshuffle.Handle(zero)"
	}
	return fmt.Sprintf("memshuffle.Handle(%016x/%d:%d:%d)", h.owner, h.shard(), h.slot(), h.gen())
}
