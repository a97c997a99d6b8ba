//go:build !amd64

package aesctr

// supported is false: there is no assembly for this architecture, and a
// pure-Go AES would keep round keys and keystream in Go variables, which is
// what this package exists to avoid. It is a variable, as on amd64, so that
// code guarded by Supported type-checks and lints the same everywhere.
var supported = false

// expandKeyAsm, xorKeyStreamAsm, copyAsm and equalAsm are never reached:
// their callers check supported first. They panic rather than return without doing the work.

func expandKeyAsm(rk *[RoundKeysSize]byte, key *[32]byte, guard uint8, ticks uint64) {
	if !supported {
		panic("aesctr: no assembly on this architecture")
	}
}

func xorKeyStreamAsm(rk *[RoundKeysSize]byte, salt *[8]byte, base uint64, dst, src []byte, scratch *[16]byte, guard uint8, ticks uint64) {
	if !supported {
		panic("aesctr: no assembly on this architecture")
	}
}

func copyAsm(dst, src []byte, guard uint8, ticks uint64) {
	if !supported {
		panic("aesctr: no assembly on this architecture")
	}
}

func equalAsm(a, b []byte, guard uint8, ticks uint64) int {
	if !supported {
		panic("aesctr: no assembly on this architecture")
	}
	return 0
}

func syscallTicksAsm(n int) uint64 { return 0 }

func invariantTSCAsm() bool { return false }

func xor2KeyStreamAsm(rkA *[RoundKeysSize]byte, saltA *[8]byte, baseA uint64, rkB *[RoundKeysSize]byte, saltB *[8]byte, baseB uint64, data []byte, scratch *[16]byte, guard uint8, ticks uint64) {
	if !supported {
		panic("aesctr: no assembly on this architecture")
	}
}
