package memshuffle

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func init() {
	if os.Getenv("MEMSHUFFLE_CHILD") == "backup-reclaim" {
		os.Exit(backupReclaimChild())
	}
}

// TestIdleBackupsReclaimed: in the AEAD modes each shard keeps the backup
// buffer its last Rent used. After entries of 900 KiB were rented and
// freed on every shard, a LockStrict Shuffler under an 8 MiB limit holds
// as many entries of 32 KiB (tag included) with AES-256-GCM as with
// AES-256-CTR, which keeps no backups. When the backups were locked
// memory, the idle ones of the other shards held most of the limit, until
// a refused allocation gave them back too, not only its own; now they are
// plain memory (see mapBackup) and take none of it.
//
// Both modes must also fill at least 240 of the 256 places the limit has:
// an allocation refused on one shard goes into room another shard's
// arenas have (see TestAllocElsewhere). Before, beside two busy loops, the
// filling goroutine moved between shards and left up to 900 KiB of room
// in their current arenas: 8 runs fit 225 to 253 entries with GCM and 244
// to 248 with CTR, and 252 to 254 with either since.
func TestIdleBackupsReclaimed(t *testing.T) {
	out := runAsNobody(t, "backup-reclaim")
	var gcm, ctr int
	if _, err := fmt.Sscanf(lastLine(out), "fit gcm=%d ctr=%d", &gcm, &ctr); err != nil {
		t.Fatalf("helper said %q", lastLine(out))
	}
	if ctr < 240 || gcm < 240 {
		t.Errorf("%d entries of 32 KiB fit with AES-256-GCM, %d with AES-256-CTR", gcm, ctr)
	} else {
		t.Logf("%d entries of 32 KiB fit with AES-256-GCM, %d with AES-256-CTR", gcm, ctr)
	}
}

// backupReclaimChild is the helper process of TestIdleBackupsReclaimed.
func backupReclaimChild() int {
	fmt.Printf("uid=%d \n", os.Getuid())
	if !limitMemlock() {
		return 1
	}
	fit := func(c Cipher, size int) int {
		s, err := New(WithLockMode(LockStrict), WithCipher(c), WithShards(8))
		if err != nil {
			fmt.Println("New:", err)
			return -1
		}
		defer s.Close()
		churnLarge(s)
		n := 0
		for {
			_, err := Alloc[byte](s, size)
			if err != nil {
				if !errors.Is(err, ErrLockFailed) {
					fmt.Println("Alloc:", err)
					return -1
				}
				return n
			}
			n++
		}
	}
	// Entries that take 32 KiB with their tag, so that both modes pack
	// their arenas alike.
	gcm := fit(AES256GCM, 32<<10-16)
	ctr := fit(AES256CTR, 32<<10)
	fmt.Printf("fit gcm=%d ctr=%d\n", gcm, ctr)
	return 0
}

// churnLarge has goroutines on each P rent and free entries of 900 KiB,
// leaving in most shards an empty current arena of that size and, in the
// AEAD modes, a backup buffer.
func churnLarge(s *Shuffler) {
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				h, err := Alloc[byte](s, 900<<10)
				if err != nil {
					continue
				}
				if b, err := RentSlice[byte](s, h); err == nil {
					b[0] = 1
					s.Return(h)
				}
				s.Free(h)
				runtime.Gosched()
			}
		})
	}
	wg.Wait()
}

// lastLine returns the last non-empty line of out.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}
