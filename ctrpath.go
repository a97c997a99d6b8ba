package memshuffle

import (
	"github.com/memshuffle/memshuffle/internal/ctr"
	"github.com/memshuffle/memshuffle/internal/seal"
	"github.com/memshuffle/memshuffle/internal/store"
)

// shortCTR returns c as the AES-256-CTR cipher with its round keys off
// the heap, when it is that and n bytes take one call of the assembly, and
// nil otherwise. The default cipher, which is what nearly every Rent and
// Return of an entry runs, then goes straight to the assembly (XORShort)
// instead of through the interface, seal's wrapper and ctr's chunking of
// long inputs; anything else (the crypto/aes fallback, long entries, the
// AEADs) takes the interface, which does the same XOR for CTR.
// TestXORCTRMatchesInterface holds the two to the same bytes. It inlines, so
// the caller pays one call into the assembly's Go wrapper and no more.
func shortCTR(c seal.Cipher, n int) *ctr.Cipher {
	if k, ok := seal.CTR(c); ok && k.OffHeap() && n <= ctr.ShortMax {
		return k
	}
	return nil
}

// sealCounters is how many counter values sealing n bytes takes on the
// path k that shortCTR chose (nil: the cipher interface).
func (sh *shard) sealCounters(k *ctr.Cipher, n int) uint64 {
	if k != nil {
		return ctr.Blocks(n)
	}
	return sh.ciph.Counters(n)
}

// nextCounters takes n counter values from the shard's run when it still
// holds them, which it nearly always does, and reports false otherwise;
// then reserve refills the run. It inlines into the paths of Return and
// Alloc, where a call of reserve would cost a call on every one.
func (sh *shard) nextCounters(n uint64) (uint64, bool) {
	b := sh.ctrNext
	if sh.ctrEnd-b < n {
		return 0, false
	}
	sh.ctrNext = b + n
	return b, true
}

// sealTo encrypts src into dst, which is len(src)+Overhead bytes and
// either starts at src or does not overlap it, under the run of counter
// values at base, on the path k that shortCTR chose for sh.ciph; in the
// AEAD modes the Handle of slot i, holding sl, is the associated data.
func (sh *shard) sealTo(k *ctr.Cipher, dst, src []byte, base uint64, i uint32, sl *store.Slot) {
	if k != nil {
		k.XORShort(dst, src, base, &sh.scratch.KS)
		return
	}
	if sh.Overhead() != 0 { // only the AEADs read the associated data
		sh.setAD(i, sl)
	}
	sh.ciph.Seal(dst, src, base, sh.scratch)
}
