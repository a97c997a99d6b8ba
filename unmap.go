package memshuffle

import "github.com/memshuffle/memshuffle/internal/osmem"

// unmapList collects the regions of arenas released under a shard lock,
// for the caller to unmap after it has let go of the lock: unmapping can
// stall (TLB shootdowns, munlock), and a background step should not make a
// Rent wait for that. Functions that can release an arena take one as an
// argument; a caller that unmaps at once passes nil, so what a release
// does is decided by its caller, never by state another path has set.
type unmapList []*osmem.Region

// add takes r, the region of an arena just released, for unmapping later.
// Until then it counts with the regions that are not arenas, so that
// Stats.LockedBytes keeps matching what the system has locked.
func (l *unmapList) add(s *Shuffler, r *osmem.Region) {
	*l = append(*l, r)
	s.countAux(r, 1)
}

// unmapAll unmaps every region in l and empties it; the caller holds no
// shard lock. A region the system will not take back stays mapped and
// counted, wiped, as it was released.
func (l *unmapList) unmapAll(s *Shuffler) {
	for i, r := range *l {
		_ = s.unmapAux(r)
		(*l)[i] = nil
	}
	*l = (*l)[:0]
}
