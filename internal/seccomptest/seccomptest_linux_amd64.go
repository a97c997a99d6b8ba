package seccomptest

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Rule is one refusal: every call of system call Nr fails with Errno, or,
// when Arg is 0 or more, only the calls whose argument Arg has Val in its
// low 32 bits (one madvise advice, say).
type Rule struct {
	Nr    uint32
	Arg   int
	Val   uint32
	Errno unix.Errno
}

// Refuse makes every call of nr fail with errno.
func Refuse(nr uintptr, errno unix.Errno) Rule {
	return Rule{Nr: uint32(nr), Arg: -1, Errno: errno}
}

// RefuseArg makes the calls of nr whose argument arg (counted from 0) is
// val fail with errno.
func RefuseArg(nr uintptr, arg int, val uint32, errno unix.Errno) Rule {
	return Rule{Nr: uint32(nr), Arg: arg, Val: val, Errno: errno}
}

// env names, in a child process, the case whose filter the child installs.
const env = "MEMSHUFFLE_SECCOMPTEST_CASE"

// Run runs body under a filter refusing rules. A filter cannot be removed,
// so the test binary runs again for the calling test alone, and in that
// child, named by name, Run installs the filter on every thread and calls
// body; the parent fails with the child's output if the child fails. Run
// skips the test where the system allows no seccomp filter.
func Run(t *testing.T, name string, rules []Rule, body func(t *testing.T)) {
	t.Helper()
	switch os.Getenv(env) {
	case name:
		install(t, rules)
		body(t)
		return
	case "":
	default:
		return // the child of another case of the same test
	}
	// Each level of a subtest's name is matched on its own, and as it
	// is: a name holding a metacharacter ("a+b") matches nothing
	// unquoted, and the child then passes without running body.
	levels := strings.Split(t.Name(), "/")
	for i, l := range levels {
		levels[i] = "^" + regexp.QuoteMeta(l) + "$"
	}
	cmd := exec.Command(os.Args[0], "-test.run="+strings.Join(levels, "/"), "-test.count=1", "-test.v", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), env+"="+name)
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), skipMark) {
		t.Skipf("%s: %s", name, out)
	}
	if err != nil {
		t.Fatalf("%s: child: %v\n%s", name, err, out)
	}
	// A body that skipped checked nothing, and a child that did not run
	// the test at all passes as well: neither is a pass here.
	if strings.Contains(string(out), "--- SKIP: "+t.Name()+" (") {
		t.Skipf("%s: child skipped:\n%s", name, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()+" (") {
		t.Fatalf("%s: the child did not run %s:\n%s", name, t.Name(), out)
	}
	if testing.Verbose() {
		t.Logf("%s: child:\n%s", name, out)
	}
}

// skipMark starts the message of a child that could not install its
// filter, for the parent to skip on.
const skipMark = "seccomptest: no filter: "

// install puts a filter refusing rules on every thread of the process, or
// skips the test.
func install(t *testing.T, rules []Rule) {
	t.Helper()
	const (
		offNr   = 0  // seccomp_data.nr
		offArch = 4  // seccomp_data.arch
		offArgs = 16 // seccomp_data.args, each a u64
	)
	ld := func(off uint32) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off}
	}
	jeq := func(k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: jt, Jf: jf, K: k}
	}
	ret := func(k uint32) unix.SockFilter { return unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k} }
	allow := ret(unix.SECCOMP_RET_ALLOW)
	// Another architecture's numbers name other calls: let them through.
	prog := []unix.SockFilter{ld(offArch), jeq(unix.AUDIT_ARCH_X86_64, 1, 0), allow}
	for _, r := range rules {
		deny := ret(unix.SECCOMP_RET_ERRNO | uint32(r.Errno))
		if r.Arg < 0 {
			prog = append(prog, ld(offNr), jeq(r.Nr, 0, 1), deny)
			continue
		}
		// x86-64 is little-endian: the low half comes first.
		prog = append(prog, ld(offNr), jeq(r.Nr, 0, 3), ld(offArgs+8*uint32(r.Arg)), jeq(r.Val, 0, 1), deny)
	}
	prog = append(prog, allow)
	fp := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		t.Skipf("%sno_new_privs: %v", skipMark, err)
	}
	if _, _, errno := syscall.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fp))); errno != 0 {
		t.Skipf("%sseccomp: %v", skipMark, errno)
	}
}
