package memshuffle

import (
	"crypto/fips140"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"reflect"
	"slices"
	"unsafe"
)

// MAC appends to dst the HMAC (RFC 2104) of msg under the key held in the
// entry key, with the hash h makes (sha256.New, say), and returns the
// extended slice. The result equals crypto/hmac's for every key length,
// keys longer than the hash's block size included; compare MACs with
// hmac.Equal.
//
// The key is read from a view of the entry, so any number of MACs under
// one key may run at once. Unlike hmac.New, MAC keeps no padded copies of
// the key: the key-derived blocks exist in one buffer of its own, wiped as
// soon as both hashes have absorbed them, and both hashes are overwritten
// with zeros and reset before MAC returns, which overwrites the states and
// buffers derived from the key. With the standard library's SHA-256 or
// SHA-512 (in a build without GOEXPERIMENT=boringcrypto), that buffer and
// both hashes' states are in memory mapped outside the Go heap, and left
// out of core dumps as the arenas are where the system allows it: 48 KiB
// for the process (with 4 KiB pages), not locked, mapped by the first MAC
// with one of those hashes, with room for 64 MACs at once (a further one
// computes on the heap, as do all of them if the mapping is refused). A
// dump of a process in the middle of MACs then finds no pad; crypto's Sum
// still copies a hash's state into its frame on the goroutine's stack,
// which is zeroed when the call ends. With another hash the pad and the
// states are on the heap while the call runs. In secret
// mode (see SecretMode) all of it runs inside secret.Do; otherwise, with
// the standard library's SHA-256 or SHA-512 and up to 256 KiB of key and
// message, it runs where the runtime cannot preempt it, which would save
// the registers holding those states (see SECURITY.md). Each call makes
// two hashes; h must return a new one each time, as sha256.New does, or
// MAC fails with ErrInvalidOption, where hmac.New panics; a nil h, or one
// that returns a nil hash, fails with ErrNilArgument. Hashes whose
// sizes no cryptographic hash has (a Size below 1 or above the
// BlockSize, as the checksums of hash/crc32, hash/crc64 and hash/fnv
// have, which crypto/hmac takes; a BlockSize above 4 KiB; two hashes of
// different sizes) fail with ErrInvalidSize before anything is allocated
// for them. A hash's Sum may return its sum anywhere and of any length,
// as append allows: MAC takes what it returns, as crypto/hmac does, and
// wipes it.
//
// A key of zeros (an Alloc'd entry nobody filled) fails with ErrInvalidKey:
// HMAC pads a key with zeros, so a key of zeros up to the block size gives
// the MAC of the empty key, which anyone can compute. The test takes a time
// that depends on the key's length alone.
//
// Under GODEBUG=fips140=only MAC refuses what crypto/hmac refuses there: a
// hash other than SHA-2 or SHA-3 (ErrUnsupported) and a key shorter than
// 112 bits (ErrInvalidKey).
//
// A panic of h or of a hash it made is returned as an error matching
// ErrPanicked, after the key's padded blocks are wiped and the view of the
// key has ended; on any error dst is returned as it was.
//
// The hashes run with the goroutine locked to its thread, whose signal
// stack is watched for the registers they hold (see SECURITY.md). A hash
// that blocks (on I/O, a lock, a channel, a sleep) keeps that thread while
// it waits, so each MAC blocked in one takes a thread of its own: 200 at
// once with a hash that sleeps 5 ms in Write ran on 208 threads, where
// crypto/hmac ran on 5, and under a limit on threads (RLIMIT_NPROC,
// `ulimit -u`, a cgroup's pids.max, TasksMax= in a systemd unit) the Go
// runtime ends the process when it cannot start one. The standard
// library's hashes do not block.
func MAC(s *Shuffler, key Handle, h func() hash.Hash, msg, dst []byte) (out []byte, err error) {
	if h == nil {
		return dst, fmt.Errorf("%w: nil hash function", ErrNilArgument)
	}
	defer func() {
		if p := recover(); p != nil {
			out, err = dst, panicError("hash", p)
		}
	}()
	return mac(s, key, h, msg, dst)
}

// mac is MAC, with h's panics going on.
func mac(s *Shuffler, key Handle, h func() hash.Hash, msg, dst []byte) ([]byte, error) {
	// Everything MAC allocates is allocated here, before the key is read:
	// in secret mode an allocation inside secret.Do costs a record the
	// collector keeps until it erases it, and these need none, since MAC
	// wipes the pad and resets the hashes itself.
	inner, outer := h(), h()
	if inner == nil || outer == nil || isNilPointer(inner) || isNilPointer(outer) {
		return dst, fmt.Errorf("%w: hash function returned nil", ErrNilArgument)
	}
	if sameHash(inner, outer) {
		// One hash for both would give a MAC of nothing: hmac.New panics.
		return dst, fmt.Errorf("%w: hash function returned the same hash twice", ErrInvalidOption)
	}
	bs, size := inner.BlockSize(), inner.Size()
	// A size below 1 would make slices.Grow panic, and a block size of
	// 2^40 the allocation of the pad end the process.
	if bs <= 0 || bs > maxHashBlock || outer.BlockSize() != bs || size < 1 || size > bs || outer.Size() != size {
		return dst, fmt.Errorf("%w: hash block size %d, size %d", ErrInvalidSize, bs, size)
	}
	if err := macRefused(h); err != nil {
		return dst, err
	}
	var pad []byte
	if sc, ok := takeMACScratch(inner, outer, bs); ok {
		defer sc.free()
		inner, outer, pad = sc.inner, sc.outer, sc.pad
	} else {
		pad = make([]byte, bs)
	}
	out := slices.Grow(dst, size)
	err := borrowKey(s, key, macPin(inner, outer, msg), func(k []byte) (err error) {
		if keyIsZero(k) {
			return errZeroKey
		}
		if len(k) < fipsMinHMACKey && fips140.Enforced() {
			return errShortHMACKey
		}
		// A panic of the caller's hash is recovered here, inside the
		// guarded call, so that the call returns and its guard zeroes the
		// stack where the hash's frames were, key XOR ipad in them. Left
		// to MAC's recover, the guard's deferred zeroing ran below the
		// panicking frames and left them as they were.
		defer func() {
			if p := recover(); p != nil {
				err = panicError("hash", p)
			}
		}()
		out = hmacAppend(inner, outer, pad, k, msg, out)
		return nil
	})
	if err != nil {
		return dst, err
	}
	return out, nil
}

// macPin is the pinRule of a MAC of msg with the hashes inner and outer:
// safe where both are the standard library's SHA-256 or SHA-512 (of any
// of their sizes), whose code neither parks nor panics. Any other hash is
// the caller's code, which may do either.
func macPin(inner, outer hash.Hash, msg []byte) pinRule {
	return pinRule{safe: pinnedHashes[reflect.TypeOf(inner)] && pinnedHashes[reflect.TypeOf(outer)], extra: len(msg)}
}

// pinnedHashes are the types of the hashes MAC runs pinned.
var pinnedHashes = map[reflect.Type]bool{
	reflect.TypeOf(sha256.New()): true,
	reflect.TypeOf(sha512.New()): true,
}

// maxHashBlock bounds the block size MAC takes from a hash, for which it
// allocates a pad: the largest of the standard hashes is SHA3-224's, 144
// bytes.
const maxHashBlock = 4 << 10

// elsewhere reports whether sum, which a Sum(pad[:0:len(pad)]) returned,
// lies outside pad: a hash of the caller's may return its sum in an array
// of its own (append may), and hmacAppend then wipes it there.
func elsewhere(sum, pad []byte) bool {
	if len(sum) == 0 {
		return false
	}
	p, lo := uintptr(unsafe.Pointer(&sum[0])), uintptr(unsafe.Pointer(&pad[0]))
	return p < lo || p-lo >= uintptr(len(pad))
}

// sameHash reports whether a and b are one hash, as crypto/hmac checks: a
// hash type that cannot be compared panics, and is taken as two.
func sameHash(a, b hash.Hash) (same bool) {
	defer func() { _ = recover() }()
	return a == b
}

// hmacAppend computes HMAC(key, msg) with two fresh hashes of block size
// len(pad) and appends it to dst. pad holds, in turn, the key (or its
// hash), key XOR ipad, key XOR opad, and the inner hash; the hashes read
// full blocks straight from it without buffering them. pad is zeros again
// when hmacAppend returns, and both hashes are reset.
func hmacAppend(inner, outer hash.Hash, pad, key, msg, dst []byte) []byte {
	// Also when a hash of the caller's panics.
	defer Wipe(pad)
	bs := len(pad)
	if len(key) > bs {
		inner.Write(key)
		// The standard hashes append the key's hash at the pad's start. A
		// hash of the caller's may return it elsewhere, past the pad's
		// start, longer than a block (capped at the pad, it lands
		// elsewhere) or shorter than what it wrote there: as for
		// crypto/hmac, the key is what Sum returns, up to a block,
		// followed by zeros.
		sum := inner.Sum(pad[:0:bs])
		outside := elsewhere(sum, pad)
		clear(pad[copy(pad, sum):])
		if outside {
			Wipe(sum)
		}
		inner.Reset()
	} else {
		copy(pad, key)
	}
	for i := range pad {
		pad[i] ^= 0x36
	}
	inner.Write(pad)
	for i := range pad {
		pad[i] ^= 0x36 ^ 0x5c
	}
	outer.Write(pad)
	Wipe(pad)

	inner.Write(msg)
	sum := inner.Sum(pad[:0:bs])
	outer.Write(sum)
	if elsewhere(sum, pad) {
		Wipe(sum)
	}
	dst = outer.Sum(dst)

	// Reset puts the chaining values back to the initial ones, but leaves
	// a hash's buffer as it was: the key's last bytes after a long key,
	// and, in a hash that keeps the last full block it was given rather
	// than compress it (BLAKE2), the padded key itself. Zeros of a block
	// less one byte cover the buffer of the first kind, a whole block
	// that of the second, in both hashes.
	Wipe(pad)
	for _, h := range []hash.Hash{inner, outer} {
		h.Reset()
		h.Write(pad[:bs-1])
		h.Reset()
		h.Write(pad)
		h.Reset()
	}
	return dst
}
