//go:build !race

package lock

import (
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// refuseEnv, set in a child process, has TestBarrierRefused deny
// membarrier to the child once Enable has registered it.
const refuseEnv = "LOCK_TEST_REFUSE_MEMBARRIER"

// TestBarrierRefused: a process that registered for membarrier can still
// be refused it later, by a seccomp filter installed after start-up (a
// sandbox that shuts the program in once it is set up). Sleepers must then
// still get the lock, not panic. The filter stays for the process's life,
// so the test runs in a child process.
func TestBarrierRefused(t *testing.T) {
	if os.Getenv(refuseEnv) == "" {
		if !asymmetric {
			t.Skip("Unlock uses an atomic store here: no membarrier to refuse")
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestBarrierRefused$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), refuseEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child with membarrier refused: %v\n%s", err, out)
		}
		t.Logf("child:\n%s", out)
		return
	}
	if !asymmetric {
		t.Fatal("Enable did not register the child for membarrier")
	}
	denyMembarrier(t)
	if _, _, errno := syscall.Syscall(unix.SYS_MEMBARRIER, membarrierPrivateExpedited, 0, 0); errno == 0 {
		t.Skip("the seccomp filter did not refuse membarrier")
	}
	lostWakeup(t)
	const goroutines, each = 8, 2000
	var m Mutex
	var counter int
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				m.Lock()
				counter++
				for range 200 { // long enough that others go to sleep
					pause()
				}
				m.Unlock()
			}
		})
	}
	wg.Wait()
	if counter != goroutines*each {
		t.Fatalf("counter %d, want %d", counter, goroutines*each)
	}
}

// lostWakeup has a sleeper wait on a lock that is then let go of as a
// holder does whose load of the count came before the sleeper's count,
// which x86 allows once the barrier is refused: a plain store of 0 and no
// token. The sleeper must still take the lock.
func lostWakeup(t *testing.T) {
	var m Mutex
	m.Lock()
	got := sleeper(t, &m)
	time.Sleep(10 * time.Millisecond) // asleep by now, in all likelihood
	m.state.Store(0)
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("a sleeper whose barrier was refused missed a release with no token for good")
	}
}

// denyMembarrier installs, on every thread, a seccomp filter under which
// membarrier fails with EPERM, or skips the test where that is not allowed.
func denyMembarrier(t *testing.T) {
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_MEMBARRIER},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	fp := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		t.Skipf("no_new_privs: %v", err)
	}
	if _, _, errno := syscall.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fp))); errno != 0 {
		t.Skipf("seccomp: %v", errno)
	}
}
