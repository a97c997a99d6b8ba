// Package ctr is the cipher layer: AES-256 in counter mode, with the counter
// blocks built so that none repeats under one key for the life of a Shuffler.
//
// # Counter blocks
//
// A counter block is 16 bytes: the 8-byte salt, then a 64-bit big-endian
// counter value. Every encryption of an entry reserves a fresh, contiguous run
// of counter values from an Allocator, one per 16-byte block of the entry, and
// the entry's slot records where its run starts. The Allocator only moves
// forward and is never reset, not even by a key rotation, so under one key and
// salt:
//
//   - two entries never share a counter value (their runs are disjoint), and
//   - two encryptions of the same entry never share one either (each takes a
//     new run), so writing the same plaintext twice gives different
//     ciphertext.
//
// A rotation to a different salt changes the upper half of every block; a
// rotation back to a key and salt used before still draws counter values past
// every one used so far. The low half never carries into the salt because a
// run is refused (ErrExhausted) rather than allowed to wrap past 2^64, which
// also keeps this construction identical to the standard library's 128-bit
// big-endian CTR increment, the fast path for long entries.
package ctr

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"sync/atomic"

	"github.com/memshuffle/memshuffle/internal/aesctr"
)

// BlockSize is the AES block size.
const BlockSize = aes.BlockSize

// ScratchSize is the size of the keystream scratch a caller provides to XOR.
const ScratchSize = smallBlocks * BlockSize

// smallBlocks is the longest input handled block by block; longer inputs use
// the standard library's pipelined CTR, whose setup cost only pays off beyond
// a few blocks.
const smallBlocks = 8

// ErrExhausted is returned when the 64-bit counter space is used up. At one
// counter value per 16 bytes encrypted this takes 2^68 bytes of encryption.
var ErrExhausted = errors.New("memshuffle: counter space exhausted")

// Blocks reports how many counter values an n-byte entry uses.
func Blocks(n int) uint64 { return (uint64(n) + BlockSize - 1) / BlockSize }

// Allocator hands out runs of counter values. It is safe for concurrent use.
type Allocator struct{ next atomic.Uint64 }

// NewAllocator starts the counter space at start.
func NewAllocator(start uint64) *Allocator {
	a := &Allocator{}
	a.next.Store(start)
	return a
}

// Reserve returns the first of n consecutive unused counter values.
func (a *Allocator) Reserve(n uint64) (uint64, error) {
	for {
		cur := a.next.Load()
		if n > math.MaxUint64-cur {
			return 0, ErrExhausted
		}
		if a.next.CompareAndSwap(cur, cur+n) {
			return cur, nil
		}
	}
}

// Next reports the first counter value not yet handed out.
func (a *Allocator) Next() uint64 { return a.next.Load() }

// StateSize is the size of the off-heap state a Cipher keeps its round keys
// and salt in.
const StateSize = aesctr.RoundKeysSize + 8

// Cipher is AES-256-CTR under one key and salt. It is safe for concurrent
// use as long as each goroutine passes its own scratch.
//
// Where internal/aesctr runs (amd64 with AES-NI), the round keys live in the
// caller's state buffer, which the caller keeps in locked memory excluded
// from core dumps, and never touch the Go heap. Elsewhere the Cipher falls
// back to crypto/aes, whose expanded key is on the Go heap.
type Cipher struct {
	rk     *[aesctr.RoundKeysSize]byte // nil on the crypto/aes fallback
	salt   *[8]byte
	block  cipher.Block
	salt64 uint64
}

// New builds a Cipher with its round keys in state. It does not keep key or
// salt; the caller wipes them.
func New(key *[32]byte, salt *[8]byte, state *[StateSize]byte) (*Cipher, error) {
	if aesctr.Supported() && !forceFallback {
		rk := (*[aesctr.RoundKeysSize]byte)(state[:aesctr.RoundKeysSize])
		if err := aesctr.Expand(rk, key); err != nil {
			return nil, err
		}
		sa := (*[8]byte)(state[aesctr.RoundKeysSize:])
		*sa = *salt
		return &Cipher{rk: rk, salt: sa}, nil
	}
	b, err := aes.NewCipher(key[:])
	// crypto/aes's assembly (arm64's, say) builds the schedule in vector
	// registers, the key itself first.
	fallbackDone()
	if err != nil {
		return nil, err
	}
	return &Cipher{block: b, salt64: binary.BigEndian.Uint64(salt[:])}, nil
}

// forceFallback lets tests run the crypto/aes path on machines with AES-NI.
var forceFallback bool

// OffHeap reports whether the round keys are in the caller's state rather
// than on the Go heap.
func (c *Cipher) OffHeap() bool { return c.rk != nil }

// Wipe clears the round keys. The Cipher must not be used afterwards.
//
// On the crypto/aes fallback they are in the Block, on the Go heap (on
// s390x, in memory the Block refers to: see WipeObject), where they would
// stay readable after the Cipher is dropped until the memory is reused. The copy of the Block each XOR of more than ScratchSize bytes
// makes for crypto/cipher's CTR is wiped by that XOR.
func (c *Cipher) Wipe() {
	if c.rk != nil {
		clear(c.rk[:])
		clear(c.salt[:])
		return
	}
	WipeObject(c.block)
}

// wipePointee zeroes what p points to, when it is a non-nil pointer, even
// one read from an unexported field: a Value made by NewAt may be set
// whatever the type's fields.
func wipePointee(p reflect.Value) {
	if p.Kind() != reflect.Pointer || p.IsNil() {
		return
	}
	reflect.NewAt(p.Type().Elem(), p.UnsafePointer()).Elem().SetZero()
}

// xorStream is crypto/cipher's CTR over src, from the counter block iv.
// For an AES block that stream holds a copy of the whole key schedule, on
// the Go heap (the Stream interface makes it escape), and nothing in the
// standard library clears it: every call over ScratchSize bytes left one
// behind, and a rotation or Close that wiped the Block still left the key
// readable in them. The copy is wiped once the stream is done, and the
// vector registers its assembly left round keys in are cleared (see
// fallbackDone).
func xorStream(b cipher.Block, iv, dst, src []byte) {
	st := cipher.NewCTR(b, iv)
	st.XORKeyStream(dst, src)
	wipeStream(st)
	fallbackDone()
}

// fallbackDone ends a use of the crypto/aes fallback's key schedule.
// crypto/aes's assembly (arm64's AES instructions work on vector
// registers) returns with round keys in them, the first two of AES-256's
// being the key, and they stay there until other code overwrites them:
// the next signal on the thread saves them in its frame on the signal
// stack, where they stay. Under qemu-aarch64 TestGoexitRotateKeyLogger
// found a rotated-in key in the FP/SIMD record of such frames long after
// the calls. Clearing them after each use leaves only what a signal
// during the call itself saves (arm64 has no signal guard: SECURITY.md).
func fallbackDone() { aesctr.ClearVectors() }

// wipeStream zeroes the state of st: the object it points to, or, where the
// interface holds a struct (crypto/cipher wraps the AES stream in one), the
// objects that struct's pointers refer to.
func wipeStream(st cipher.Stream) {
	v := reflect.ValueOf(st)
	if v.Kind() != reflect.Struct {
		wipePointee(v)
		return
	}
	for i := range v.NumField() {
		wipePointee(v.Field(i))
	}
}

// asmChunk bounds one assembly call: assembly cannot be preempted, and
// above 4 KiB it blocks its thread's signals, so a long entry is encrypted
// in pieces to let the runtime stop the goroutine and deliver its signals
// between them. A piece is about 40 µs of AES-NI, twice that in Rekey,
// which runs two keystreams; the runtime clears large spans in pieces of
// the same size (memclrNoHeapPointersChunked). Smaller
// pieces pay the two rt_sigprocmask calls of each more often, which where
// a syscall round trip takes a microsecond (a virtual machine whose kernel
// isolates its page tables) was a fifth of the time of 64 KiB (bench/NOTES.md,
// "Signals blocked per piece").
const asmChunk = 256 << 10

// XOR XORs src with the keystream of the run starting at counter value base
// and writes the result to dst, which must have the length of src and either
// be src or not overlap it. scratch receives keystream for short inputs and
// is wiped before XOR returns.
func (c *Cipher) XOR(dst, src []byte, base uint64, scratch *[ScratchSize]byte) {
	n := len(src)
	if n == 0 {
		return
	}
	if c.rk != nil {
		tail := (*[16]byte)(scratch[:16])
		if n <= asmChunk { // every entry of a chunk or less: one call
			aesctr.XOR(c.rk, c.salt, base, dst, src, tail)
			return
		}
		for off := 0; off < n; off += asmChunk {
			end := min(off+asmChunk, n)
			aesctr.XOR(c.rk, c.salt, base+uint64(off/BlockSize), dst[off:end], src[off:end], tail)
		}
		return
	}
	if n > ScratchSize {
		var iv [BlockSize]byte
		binary.BigEndian.PutUint64(iv[:8], c.salt64)
		binary.BigEndian.PutUint64(iv[8:], base)
		xorStream(c.block, iv[:], dst, src)
		return
	}
	ks := scratch[:(n+BlockSize-1)&^(BlockSize-1)]
	for i := 0; i < len(ks); i += BlockSize {
		blk := ks[i : i+BlockSize]
		binary.BigEndian.PutUint64(blk[:8], c.salt64)
		binary.BigEndian.PutUint64(blk[8:], base+uint64(i/BlockSize))
		c.block.Encrypt(blk, blk)
	}
	subtle.XORBytes(dst, src, ks[:n])
	clear(ks)
	fallbackDone()
}

// BulkUnit is what XORBulk works in: whole batches of the assembly's
// eight blocks, the one length of input it finishes without touching its
// scratch block for a partial block.
const BulkUnit = 8 * BlockSize

// XORBulk is XOR of the longest prefix of src that is a whole number of
// BulkUnits, and returns its length; XOR does the rest. It takes no
// scratch from the caller, so goroutines may run it at once on entries of
// one shard without sharing any: the assembly's scratch block is a zeroed
// array of its own, which only ever receives zeros, since no partial block
// reaches it. The crypto/aes fallback goes through crypto/cipher's CTR, as
// XOR does for long inputs, and wipes the stream's copy of the key schedule.
func (c *Cipher) XORBulk(dst, src []byte, base uint64) int {
	n := len(src) &^ (BulkUnit - 1)
	if n == 0 {
		return 0
	}
	if c.rk == nil {
		var iv [BlockSize]byte
		binary.BigEndian.PutUint64(iv[:8], c.salt64)
		binary.BigEndian.PutUint64(iv[8:], base)
		xorStream(c.block, iv[:], dst[:n], src[:n])
		return n
	}
	var zero [16]byte
	for off := 0; off < n; off += asmChunk {
		end := min(off+asmChunk, n)
		aesctr.XOR(c.rk, c.salt, base+uint64(off/BlockSize), dst[off:end], src[off:end], &zero)
	}
	return n
}

// Rekey turns data, encrypted by from at run fromBase, into the encryption of
// the same plaintext by to at run toBase, without the plaintext ever being
// formed, and without either keystream alone ever being stored: with
// internal/aesctr the two are combined in registers, and elsewhere block by
// block in scratch, which is wiped before Rekey returns. It does not
// allocate.
func Rekey(data []byte, from *Cipher, fromBase uint64, to *Cipher, toBase uint64, scratch *[ScratchSize]byte) {
	if from.rk != nil && to.rk != nil {
		tail := (*[16]byte)(scratch[:16])
		for off := 0; off < len(data); off += asmChunk {
			end := min(off+asmChunk, len(data))
			blk := uint64(off / BlockSize)
			aesctr.XOR2(from.rk, from.salt, fromBase+blk, to.rk, to.salt, toBase+blk, data[off:end], tail)
		}
		return
	}
	// The crypto/aes fallback, whose round keys are on the Go heap anyway:
	// one block of each keystream at a time, in scratch.
	a, b, tmp := scratch[:BlockSize], scratch[BlockSize:2*BlockSize], scratch[2*BlockSize:3*BlockSize]
	for off := 0; off < len(data); off += BlockSize {
		end := min(off+BlockSize, len(data))
		blk := uint64(off / BlockSize)
		from.keystreamBlock(a, fromBase+blk, tmp)
		to.keystreamBlock(b, toBase+blk, tmp)
		subtle.XORBytes(a, a, b)
		subtle.XORBytes(data[off:end], data[off:end], a[:end-off])
	}
	clear(scratch[:3*BlockSize])
	fallbackDone()
}

// RekeyBulk is Rekey of the longest prefix of data that is a whole number
// of BulkUnits, with no scratch from the caller, as XORBulk; it returns
// that prefix's length, and Rekey does the rest. On the crypto/aes
// fallback, whose Rekey forms keystream blocks in the caller's scratch, it
// does nothing and returns 0.
func RekeyBulk(data []byte, from *Cipher, fromBase uint64, to *Cipher, toBase uint64) int {
	n := len(data) &^ (BulkUnit - 1)
	if n == 0 || from.rk == nil || to.rk == nil {
		return 0
	}
	var zero [16]byte // only ever cleared: no partial block reaches it
	for off := 0; off < n; off += asmChunk {
		end := min(off+asmChunk, n)
		blk := uint64(off / BlockSize)
		aesctr.XOR2(from.rk, from.salt, fromBase+blk, to.rk, to.salt, toBase+blk, data[off:end], &zero)
	}
	return n
}

// keystreamBlock writes the keystream block of counter value v to dst,
// using tmp, which does not overlap dst, for the counter block.
func (c *Cipher) keystreamBlock(dst []byte, v uint64, tmp []byte) {
	if c.rk != nil {
		clear(dst)
		aesctr.XOR(c.rk, c.salt, v, dst, dst, (*[16]byte)(tmp))
		return
	}
	binary.BigEndian.PutUint64(tmp[:8], c.salt64)
	binary.BigEndian.PutUint64(tmp[8:BlockSize], v)
	c.block.Encrypt(dst, tmp[:BlockSize])
}
