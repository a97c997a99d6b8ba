package memshuffle

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

// TestLockedBytesWithinLimit: under a binding RLIMIT_MEMLOCK (run it as a
// user without CAP_IPC_LOCK, e.g. nobody with ulimit -l 8192),
// Stats.LockedBytes never exceeds the limit while entries of up to 1 MiB
// come and go at the limit, are rented (the AEAD's backup buffers) and the
// background shuffler maps and unmaps spares and released arenas with no
// shard lock held. Aux.Unmap counted such a region out only once munmap
// had returned, and another goroutine locked the room meanwhile: Stats
// counted it twice, past the limit the kernel holds the process to.
// MEMSHUFFLE_OVERLIMIT_SECONDS sets how long it runs (10 s, 3 with -short).
func TestLockedBytesWithinLimit(t *testing.T) {
	lim := osmem.BindingLockLimit()
	if lim < 0 {
		t.Skip("no binding RLIMIT_MEMLOCK (root, or unlimited): run as a user bound by one")
	}
	if raceBuild {
		t.Skip("slow under -race")
	}
	secs := 10
	if testing.Short() {
		secs = 3
	}
	if v, err := strconv.Atoi(os.Getenv("MEMSHUFFLE_OVERLIMIT_SECONDS")); err == nil {
		secs = v
	}
	s, err := New(WithCipher(AES256GCM), WithShards(4), WithBackgroundShuffle(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer churnWorkers(2, 11, func(rng *rand.Rand, hs []Handle) []Handle {
		switch {
		case len(hs) < 24 && rng.IntN(2) == 0:
			n := 4096 + rng.IntN(1<<20)
			if h, err := Alloc[byte](s, n); err == nil {
				hs = append(hs, h)
			}
		case len(hs) > 0 && rng.IntN(2) == 0:
			h := hs[rng.IntN(len(hs))]
			if _, err := RentSlice[byte](s, h); err == nil {
				_ = s.Return(h)
			}
		case len(hs) > 0:
			hs = freeAt(s, hs, rng.IntN(len(hs)))
		}
		return hs
	})()
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	samples, most := 0, int64(0)
	for time.Now().Before(deadline) {
		st := s.Stats()
		samples++
		most = max(most, st.LockedBytes)
		if st.LockedBytes > lim {
			t.Fatalf("sample %d: Stats.LockedBytes %d, past RLIMIT_MEMLOCK %d by %d", samples, st.LockedBytes, lim, st.LockedBytes-lim)
		}
		time.Sleep(50 * time.Microsecond)
	}
	t.Logf("%d samples, LockedBytes at most %d of %d", samples, most, lim)
}
