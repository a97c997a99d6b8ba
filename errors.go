package memshuffle

import (
	"errors"
	"fmt"

	"github.com/memshuffle/memshuffle/internal/ctr"
)

var (
	// ErrInvalidHandle is returned when a Handle is the zero Handle, was never
	// issued, was freed, is stale because its slot has been reused, or was
	// issued by another Shuffler.
	ErrInvalidHandle = errors.New("memshuffle: invalid handle")

	// ErrBusy is returned when renting or freeing an entry that is rented
	// or viewed, and when viewing one that is rented or that a writer waits
	// for (see View). A View also returns it, wrapped, when 65,535 views of
	// the entry are open already.
	ErrBusy = errors.New("memshuffle: entry is rented or viewed")

	// ErrExpired is returned for an entry whose expiry has passed (see
	// Shuffler.SetExpiry): it has been wiped, or is wiped when the rent that
	// held it ends. Free recycles its slot.
	ErrExpired = errors.New("memshuffle: entry expired")

	// ErrTampered is returned by Rent and View, in the authenticated cipher
	// modes, when an entry's bytes or tag were changed at rest, or replaced
	// by another entry's. No plaintext is handed out and the entry is left
	// exactly as found, for inspection; Free still works.
	ErrTampered = errors.New("memshuffle: entry failed authentication")

	// ErrNotRented is returned by Return for an entry that is not rented.
	ErrNotRented = errors.New("memshuffle: entry is not rented")

	// ErrClosed is returned by every call on a Shuffler after Close or
	// Purge (except Close and Purge themselves, which then do nothing and
	// return nil), and on a Shuffler not made by New (nil, a zero value,
	// or a copy of the struct New returned a pointer to).
	ErrClosed = errors.New("memshuffle: shuffler is closed")

	// ErrUnsupportedType is returned when a type holds Go pointers anywhere
	// inside it (pointers, strings, slices, maps, channels, functions,
	// interfaces, unsafe.Pointer) or has size 0. Memory outside the Go heap is
	// invisible to the garbage collector, so a pointer kept there could dangle.
	// It is returned for a type holding a bool too: an entry's bytes may be
	// any bytes, and a bool other than 0 or 1 is not a valid Go value.
	ErrUnsupportedType = errors.New("memshuffle: unsupported type")

	// ErrTypeMismatch is returned when Rent[T] asks for a T larger than the
	// entry or with stricter alignment than the entry was allocated with, or
	// when RentSlice[T] is asked for an entry whose size is not a multiple of
	// T's size.
	ErrTypeMismatch = errors.New("memshuffle: type does not fit the entry")

	// ErrInvalidSize is returned when an element count is below 1, or when
	// the entry's size overflows or exceeds MaxEntrySize, and for other
	// lengths out of range each function documents: an AEAD nonce of
	// another length than NonceSize, a plaintext too long to seal, a MAC
	// hash whose sizes are out of range, a ReadAll or ReadUntil limit below
	// 1, and input that leaves ReadAll or ReadUntil an empty entry.
	ErrInvalidSize = errors.New("memshuffle: invalid size")

	// ErrOutOfMemory is returned, wrapping the system error, when the
	// operating system refuses to map memory, when the library already
	// holds half of the memory mappings Linux allows the process
	// (vm.max_map_count), the rest of which the Go runtime needs, or when
	// a mapping would leave the rest of the process less than 64 MiB of
	// its limit on address space or data (RLIMIT_AS, RLIMIT_DATA), which
	// the Go runtime needs to grow its heap and start threads.
	ErrOutOfMemory = errors.New("memshuffle: out of memory")

	// ErrLockFailed is returned, wrapping the system error, when memory
	// cannot be locked into RAM and the Shuffler was made with LockStrict,
	// or with WithSecretMemory, whose memory the kernel always locks, in
	// any lock mode.
	ErrLockFailed = errors.New("memshuffle: cannot lock memory")

	// ErrNoSecretMemory is returned, wrapping the system error, by New with
	// WithSecretMemory where the system has no memfd_secret(2) or refuses it.
	// When secret memory is refused later (no file descriptor or mapping
	// left, say), the error matches ErrOutOfMemory too, as any refusal of
	// memory does.
	ErrNoSecretMemory = errors.New("memshuffle: secret memory unavailable")

	// ErrInvalidOption is returned by New for an option value out of range,
	// by StartBackgroundShuffle for a negative interval, by a Signer's Sign for crypto.SignerOpts it cannot sign with (a hash
	// function it cannot use, a digest of another length than the hash's),
	// and by MAC for a hash function that returns one hash twice.
	ErrInvalidOption = errors.New("memshuffle: invalid option")

	// ErrNilArgument is returned when a function, context, reader or
	// writer passed in is nil, by MAC for a hash function that returns a
	// nil hash, and by PublishExpvar for an empty name.
	ErrNilArgument = errors.New("memshuffle: nil argument")

	// ErrTooLarge is returned by ReadAll and ReadUntil when the input is
	// longer than the limit they were given. Nothing read is kept.
	ErrTooLarge = errors.New("memshuffle: input larger than the limit")

	// ErrCounterExhausted is returned when the 64-bit space of AES-CTR
	// counter blocks of a Shuffler is used up, which takes 2^68 bytes of
	// encryption. No counter block is ever used twice instead. A borrow
	// that ends then wipes its entry and frees the Handle, since the
	// entry can no longer be encrypted.
	ErrCounterExhausted = ctr.ErrExhausted

	// ErrRotationIncomplete is returned, wrapping the cause, by a RotateKey
	// that switched to the new key and could not re-encrypt every entry
	// under it. Every entry stays readable; the next RotateKey finishes the
	// interrupted rotation before starting its own.
	ErrRotationIncomplete = errors.New("memshuffle: key rotation incomplete")

	// ErrPanicked is returned, wrapping the panic value, when code of the
	// caller's that memshuffle runs to fill an entry (the io.Reader of
	// ReadFrom, ReadAll, ReadUntil or ReadPrivateKey) panics, what it read
	// then wiped and freed, when WriteTo's io.Writer panics, the entry
	// then encrypted again, when the hash function given to MAC, or a
	// hash it made, panics, the key's padded blocks then wiped, or when
	// the HashFunc of the opts given to a Signer's Sign panics (that error
	// matches ErrInvalidOption too).
	ErrPanicked = errors.New("memshuffle: caller's code panicked")
)

// ErrInvalidKey is returned by NewSigner and ReadPrivateKey when the bytes
// are not a private key of a supported kind and size (Ed25519; ECDSA on
// P-256, P-384 or P-521; RSA of 2048 to 4096 bits), by a Signer's Sign
// when its entry no longer holds such a key, and by NewAEAD for an entry
// that is not an AES key. A key of zeros, almost always a buffer nobody
// filled, returns it too: from RotateKey (a key array of zeros), MAC, and
// AEAD's Seal and Open (a key entry of zeros), and NewSigner and
// ReadPrivateKey (an Ed25519 seed of zeros).
var ErrInvalidKey = errors.New("memshuffle: invalid or unsupported key")

// ErrAuthFailed is returned by AEAD's Open when a message or its
// additional data was forged or damaged.
var ErrAuthFailed = errors.New("memshuffle: message authentication failed")

// ErrBufferOverlap is returned by AEAD's Seal and Open when the bytes
// they would append to dst overlap the input other than exactly, or
// overlap the additional data at all, and by RotateKey when the salt shares bytes with
// the key.
var ErrBufferOverlap = errors.New("memshuffle: output overlaps input")

// ErrUnsupported is returned, wrapping errors.ErrUnsupported too, when the
// platform lacks what a call needs (DisableCoreDumps outside Unix), when
// the call cannot be made without leaving a copy of a key behind (an ECDSA
// Signer's Sign with a nil rand, RFC 6979's deterministic signature), or
// when the process's own policy forbids it. Under
// GODEBUG=fips140=only: New with WithCipher(AES256GCM) (the FIPS module
// allows GCM only with nonces it draws itself, and the Shuffler derives
// them from its counter) or WithCipher(ChaCha20Poly1305) (not an approved
// algorithm), NewAEAD, whose caller chooses the nonces, and MAC with a
// hash the module does not approve, a Signer's Sign where the module
// refuses the rand or the key, and RotateKey of a Shuffler New made under
// fips140.WithoutEnforcement, outside it. The default AES-256-CTR
// Shuffler is not refused; see SECURITY.md.
var ErrUnsupported = fmt.Errorf("memshuffle: %w", errors.ErrUnsupported)

// ErrInvalidCount is returned when an io.Reader or io.Writer the caller
// passed in reports a count it cannot have moved: negative, or more bytes
// than it was given. Nothing read is kept.
var ErrInvalidCount = errors.New("memshuffle: reader or writer returned an impossible count")
