package memshuffle

import (
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
	"github.com/memshuffle/memshuffle/internal/seccomptest"
	"golang.org/x/sys/unix"
)

// TestDumpableBytesWhereDontDumpRefused: under a system call filter that
// refuses MADV_DONTDUMP, Stats.DumpableBytes must count what a core dump
// would hold: every arena and the Shuffler's own region, which holds the
// key and round keys, as smaps shows them without "dd". It counted the
// arenas alone, so a dump holding the key read as one holding ciphertext
// only; and it counted secret memory's arenas, which the kernel keeps out
// of dumps itself; the AEAD backup buffers, plain memory, count too. It
// left out the memory every Shuffler shares, the
// inbox and the MACs' memory, which hold a RotateKey key, a CopyFrom
// source or an HMAC's pads in the clear during a call.
func TestDumpableBytesWhereDontDumpRefused(t *testing.T) {
	rules := []seccomptest.Rule{seccomptest.RefuseArg(unix.SYS_MADVISE, 2, unix.MADV_DONTDUMP, unix.EPERM)}
	seccomptest.Run(t, "dontdump-EPERM", rules, func(t *testing.T) {
		for _, c := range []struct {
			name string
			opts []Option
		}{
			{"default", nil},
			{"strict", []Option{WithLockMode(LockStrict)}},
			{"secret", []Option{WithSecretMemory()}},
			// With a backup buffer, which a Rent maps, plain memory.
			{"gcm", []Option{WithCipher(AES256GCM)}},
		} {
			s, err := New(append(c.opts, WithShards(2))...)
			if errors.Is(err, ErrNoSecretMemory) || errors.Is(err, ErrLockFailed) {
				t.Logf("%s: %v", c.name, err)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range 200 {
				if _, err = Alloc[byte](s, 1+i*13); err != nil {
					break
				}
			}
			if errors.Is(err, ErrLockFailed) {
				t.Logf("%s: %v", c.name, err)
				s.Close()
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			key, err := Random(s, 32)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := MAC(s, key, sha256.New, []byte("message"), nil); err != nil {
				t.Fatal(err)
			}
			readAll(t, s, key)
			var want int64
			dumpable := func(b []byte) {
				if !slices.Contains(vmFlags(t, b), "dd") {
					want += int64(len(b))
				}
			}
			s.lockAll()
			for i := range s.shards {
				for _, a := range s.shards[i].Arenas.List() {
					if a != nil {
						dumpable(a.Mem)
					}
				}
				if b := s.shards[i].backup; b != nil {
					dumpable(b.Data)
				}
			}
			dumpable(s.own.Data)
			s.unlockAll()
			if c.name != "secret" && want == 0 {
				t.Fatal("the filter did not refuse MADV_DONTDUMP")
			}
			ib, mm := (*inboxMem)(atomic.LoadPointer(&inbox)), macMem.Load()
			if ib == nil || mm == nil {
				t.Fatalf("inbox %v, MAC memory %v: not mapped", ib != nil, mm != nil)
			}
			own := want
			dumpable(ib.data)
			dumpable(mm.data)
			shared := want - own
			if shared == 0 {
				t.Fatal("the filter did not refuse MADV_DONTDUMP for the shared memory")
			}
			st := s.Stats()
			if st.DumpableBytes != own {
				t.Errorf("%s: Stats.DumpableBytes %d, smaps shows %d bytes of the Shuffler's without dd", c.name, st.DumpableBytes, own)
			}
			if st.SharedDumpableBytes != shared {
				t.Errorf("%s: Stats.SharedDumpableBytes %d, smaps shows %d bytes of the shared memory without dd", c.name, st.SharedDumpableBytes, shared)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if got := s.Stats().DumpableBytes; got != 0 {
				t.Errorf("%s: Stats.DumpableBytes %d after Close", c.name, got)
			}
		}
	})
}

// TestLockStrictWhereMlockRefused: where a system call filter refuses
// mlock and mlock2, LockStrict must refuse New with ErrLockFailed, and
// the error must say that the system refuses to lock, not send the caller
// to raise RLIMIT_MEMLOCK, which changes nothing; LockBestEffort runs,
// with every byte reported unlocked.
func TestLockStrictWhereMlockRefused(t *testing.T) {
	for _, c := range []struct {
		name  string
		errno unix.Errno
	}{{"EPERM", unix.EPERM}, {"ENOSYS", unix.ENOSYS}} {
		t.Run(c.name, func(t *testing.T) {
			if c.errno == unix.EPERM && osmem.LockLimit() == 0 {
				// mlock's EPERM is then also what the limit answers: New
				// cannot tell the filter from it, and rightly names ulimit.
				t.Skip("RLIMIT_MEMLOCK is 0: a refused mlock reads as the limit")
			}
			rules := []seccomptest.Rule{
				seccomptest.Refuse(unix.SYS_MLOCK, c.errno),
				seccomptest.Refuse(unix.SYS_MLOCK2, c.errno),
			}
			seccomptest.Run(t, "mlock-"+c.name, rules, func(t *testing.T) {
				_, err := New(WithLockMode(LockStrict))
				if !errors.Is(err, ErrLockFailed) {
					t.Fatalf("New(LockStrict) with mlock refused: %v, want ErrLockFailed", err)
				}
				if msg := err.Error(); strings.Contains(msg, "ulimit") || !strings.Contains(msg, "refuses") {
					t.Errorf("New(LockStrict) with mlock refused whatever the limit: %q", msg)
				}
				s := newTest(t, WithShards(2))
				if _, err := Alloc[byte](s, 100); err != nil {
					t.Fatal(err)
				}
				st := s.Stats()
				if st.LockedBytes != 0 || st.UnlockedBytes == 0 || st.LockFailures == 0 {
					t.Errorf("LockBestEffort with mlock refused: LockedBytes %d, UnlockedBytes %d, LockFailures %d",
						st.LockedBytes, st.UnlockedBytes, st.LockFailures)
				}
			})
		})
	}
}

// TestSpareLockedWhereMlock2Refused: where a system call filter refuses
// mlock2 (ENOSYS, as before Linux 4.4, or EPERM) but allows mlock, the
// background shuffler backs each spare and then locks it, and every spare
// ends up locked (spareLockedBeforeBacked's fallback branch).
func TestSpareLockedWhereMlock2Refused(t *testing.T) {
	for _, c := range []struct {
		name  string
		errno unix.Errno
	}{{"ENOSYS", unix.ENOSYS}, {"EPERM", unix.EPERM}} {
		t.Run(c.name, func(t *testing.T) {
			rules := []seccomptest.Rule{seccomptest.Refuse(unix.SYS_MLOCK2, c.errno)}
			seccomptest.Run(t, "mlock2-"+c.name, rules, func(t *testing.T) {
				if lockOnFaultWorks(t) {
					t.Fatal("mlock2 locked under a filter that refuses it")
				}
				spareLockedBeforeBacked(t)
			})
		})
	}
}

// TestDisableCoreDumpsWhereSetrlimitRefused: under a system call filter
// that refuses setrlimit and prlimit64 (systemd's SystemCallFilter=
// ~@resources), DisableCoreDumps cannot lower RLIMIT_CORE, and says so,
// but must still make the process not dumpable, which on Linux alone keeps
// every core dump from being written. It returned at the refusal, and left
// the process dumpable and open to ptrace by its user.
func TestDisableCoreDumpsWhereSetrlimitRefused(t *testing.T) {
	rules := []seccomptest.Rule{
		seccomptest.Refuse(unix.SYS_PRLIMIT64, unix.EPERM),
		seccomptest.Refuse(unix.SYS_SETRLIMIT, unix.EPERM),
	}
	seccomptest.Run(t, "setrlimit-EPERM", rules, func(t *testing.T) {
		if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err == nil {
			t.Fatal("the filter did not refuse setrlimit")
		}
		err := DisableCoreDumps()
		if !errors.Is(err, unix.EPERM) {
			t.Errorf("DisableCoreDumps with setrlimit refused = %v; want an error wrapping EPERM", err)
		}
		if d, _ := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); d != 0 {
			t.Errorf("dumpable %d after DisableCoreDumps with setrlimit refused; want 0", d)
		}
	})
}
