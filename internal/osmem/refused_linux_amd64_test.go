package osmem

import (
	"errors"
	"testing"

	"github.com/memshuffle/memshuffle/internal/seccomptest"
	"golang.org/x/sys/unix"
)

// TestLockOnFaultRefusedFallsBack: a system call filter written before
// mlock2 existed (an allowlist whose default answer is EPERM, as older
// container profiles were) refuses mlock2 and allows mlock. LockOnFault
// must then send its caller to Relock, as it does where the kernel has no
// mlock2, not report a refusal to lock: the background shuffler left every
// spare it mapped unlocked under LockBestEffort, and under LockStrict
// refused them all, though mlock would have locked them.
func TestLockOnFaultRefusedFallsBack(t *testing.T) {
	for _, c := range []struct {
		name  string
		errno unix.Errno
	}{{"EPERM", unix.EPERM}, {"ENOSYS", unix.ENOSYS}} {
		t.Run(c.name, func(t *testing.T) {
			rules := []seccomptest.Rule{seccomptest.Refuse(unix.SYS_MLOCK2, c.errno)}
			seccomptest.Run(t, "mlock2-"+c.name, rules, func(t *testing.T) {
				r, err := Map(8*pageSize, Flags{SmallPages: true})
				if err != nil {
					t.Fatal(err)
				}
				defer Unmap(r)
				if err := LockOnFault(r); !errors.Is(err, ErrNoOnFault) {
					t.Fatalf("LockOnFault with mlock2 refused: %v, want ErrNoOnFault", err)
				}
				if r.Locked {
					t.Fatal("a refused lock on fault left the region marked locked")
				}
				if err := Relock(r); err != nil {
					t.Fatalf("Relock, mlock allowed: %v", err)
				}
				if !r.Locked {
					t.Error("Relock left the region unlocked")
				}
			})
		})
	}
}
