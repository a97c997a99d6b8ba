// Package memshuffle keeps secrets and other sensitive values encrypted in
// memory outside the Go heap, and hands them out only for as long as a
// caller needs them.
//
// # The model
//
// A [Shuffler] holds entries. [Alloc] and [Create] make an entry and return a
// [Handle]: an opaque value, not a pointer. Entries live in arenas mapped
// from the operating system, so the garbage collector never scans, copies or
// frees them, and every entry is encrypted at rest with AES-256-CTR from the
// moment it exists.
//
// To use a value, rent it: [Rent] or [RentSlice] decrypts the entry in place
// and returns a typed pointer or slice into it. [Shuffler.Return] encrypts it
// again, under a counter run no other encryption has used, and ends the rent.
// A rented entry never moves; everything else may:
// [Shuffler.Shuffle] moves every unrented entry into fresh memory in a random
// order, wipes what they left behind and gives empty arenas back to the
// operating system. With [Shuffler.SetShuffleOnBorrowReturn] each Return
// moves the returned entry too. [Shuffler.RotateKey] re-encrypts everything
// under a new key without losing data. [Shuffler.Free] wipes an entry at
// once; its Handle, and every copy of it, stops working, and no later entry
// is given an equal one.
//
//	s, err := memshuffle.New()
//	if err != nil { ... }
//	defer s.Close()
//
//	h, err := memshuffle.Alloc[byte](s, 32) // a 32-byte secret
//	key, err := memshuffle.RentSlice[byte](s, h)
//	_, err = io.ReadFull(rand.Reader, key)  // written straight into the entry
//	err = s.Return(h)                       // ciphertext again
//
// Values must be plain data: no Go pointers, strings, slices, maps,
// channels, functions or interfaces anywhere inside them, because memory
// outside the heap is invisible to the garbage collector. Such types fail
// with [ErrUnsupportedType]; fixed-size arrays and structs of numbers are
// fine.
//
// Every error is a sentinel that works with [errors.Is]: [ErrInvalidHandle],
// [ErrBusy], [ErrNotRented], [ErrClosed], [ErrUnsupportedType],
// [ErrTypeMismatch], [ErrInvalidSize], [ErrOutOfMemory], [ErrLockFailed],
// [ErrNoSecretMemory], [ErrExpired], [ErrTampered], [ErrInvalidOption],
// [ErrCounterExhausted], [ErrNilArgument], [ErrBackgroundRunning],
// [ErrNameTaken]. No input makes a call panic.
//
// A rent belongs to its handle, not to a goroutine (Return may come from any
// goroutine), so Return exactly once per Rent: a second Return gets
// [ErrNotRented] only while nobody else has rented the entry since, and
// otherwise ends that other rent. The With functions return exactly once.
//
// # Threat model
//
// memshuffle protects values at rest, that is, while not rented, against
// whoever gets a copy of the process's memory without running code in it: a
// core dump, a page written to swap, a heap over-read, a forked child, a
// forensic image taken later, memory handed back after free or move. At rest
// an entry is ciphertext; arenas are locked into RAM where the system allows
// (see [LockMode]), excluded from core dumps and wiped in forked children on
// Linux, and surrounded by guard pages. Freed and moved entries are wiped at
// once, and arenas are wiped before they go back to the system.
//
// It does not protect a value while it is rented: then it is plaintext in
// the arena, and an attacker who can ptrace the process or read
// /proc/PID/mem sees it. It does not protect copies the caller makes of a
// rented value (into a Go string, a []byte on the heap, a log line), and it
// does not defend against side channels. The key's round keys sit in the
// Shuffler's own locked, dump-excluded region (with the default cipher on
// amd64 with AES-NI; see [Stats].KeyOffHeap), so a live attacker who can
// read the process can decrypt everything. SECURITY.md has the full model
// and how each claim is tested.
//
// # Ciphers
//
// [WithCipher] picks the cipher: [AES256CTR] (the default: fastest, key
// schedule off the heap with AES-NI, but unauthenticated), or [AES256GCM] and
// [ChaCha20Poly1305], which authenticate every entry bound to its Handle, so
// that a changed byte or tag, or another entry's ciphertext copied over it,
// makes Rent and View fail with [ErrTampered] and hand out nothing. No nonce
// or counter block repeats under a key in any mode; Shuffle and RotateKey
// work the same in all of them.
//
// # Getting secrets in and out
//
// Generate secrets straight into rented memory, read them with [ReadFrom]
// (an *os.File reads into the entry directly), or hand over a []byte with
// [CopyFrom], which wipes it. [Wipe] clears buffers of your own.
// [Shuffler.Purge] and [PurgeOnSignal] destroy everything at once;
// [DisableCoreDumps] turns off core dumps for the whole process, and is
// never called for you.
//
// [ReadAll] and [ReadUntil] take input of unknown length, [Random] makes a
// secret in place, [WriteTo] sends one to an io.Writer, [Clone] copies one,
// and [Equal] and [EqualEntries] compare in constant time, all without a
// copy on the Go heap. Entries are aligned to their size, up to
// [EntryAlign] bytes, so a byte entry can be rented as a []uint64 or as any
// plain struct that fits in it. [PurgeAll],
// [PurgeAllOnSignal], [SafeExit] and [SafePanic] purge every open
// Shuffler of the process. docs/MIGRATING.md maps memguard's calls to
// these.
//
// # Lifetimes, background shuffling and telemetry
//
// [Shuffler.SetExpiry] and [WithDefaultTTL] give entries an expiry, after
// which they are wiped and answer [ErrExpired].
// [Shuffler.StartBackgroundShuffle] and [WithBackgroundShuffle] keep
// relocating entries in small steps, so no Rent waits behind a whole-heap
// move. [Shuffler.Stats] counts what operators need;
// [Shuffler.PublishExpvar] serves it through expvar, the exporters/prometheus
// module as Prometheus metrics, and [WithLogger] reports rotations, refused
// locks, tampering and long rents.
//
// # Borrowing
//
// [With], [WithSlice], [WithView] and [WithViewSlice] rent, call a function
// and return, also when the function panics, so a Return cannot be
// forgotten. A rent is exclusive: a second [Rent] of a rented entry returns
// [ErrBusy] rather than sharing the plaintext. For a value many goroutines
// read at once (an API key every request checks), [View] and [ViewSlice]
// share one decryption among any number of readers; the last
// [Shuffler.ReturnView] encrypts it again. [RentContext] and [ViewContext],
// and [WithContext], [WithSliceContext], [WithViewContext] and
// [WithViewSliceContext], wait for a busy entry until a context is done
// instead of failing. A
// writer waiting in RentContext goes ahead of readers that come after it,
// so a steady stream of views cannot keep it out; as with
// [sync.RWMutex.RLock], a goroutine that holds a view must therefore not
// wait for a second view of the same entry. [WithRentTracking] records where each rent was
// taken and reports those held too long, through [Shuffler.Stats],
// [Shuffler.LongRents] and [WithLogger], so a forgotten Return shows up in
// minutes.
//
// # Passing a secret to crypto APIs
//
// Go's crypto packages take keys as []byte or as their own key types, and
// many copy what they are given. Hand them rented memory, for as short a
// time as possible, and know what they keep:
//
//   - crypto/ed25519: since Go 1.26 Sign caches each private key's
//     precomputed form under a weak pointer to the key's first byte, which
//     must therefore be Go heap memory: signing straight from an entry makes
//     the runtime abort. Keep the 32-byte seed in an entry and, in a
//     crypto.Signer, derive the key into one long-lived heap buffer under a
//     mutex, sign, and wipe the buffer; the cache then holds one copy, which
//     memshuffle cannot wipe.
//   - crypto/tls: tls.Certificate.PrivateKey accepts any crypto.Signer, so
//     a Signer like the one above keeps the TLS key's seed in the Shuffler;
//     examples/tlsserver does this, and says what stays on the heap.
//   - crypto/hmac: hmac.New copies the key into padded blocks on the heap
//     for the life of the hash. Build the hash inside a [WithViewSlice] call,
//     use it, and drop it; don't keep one around.
//   - Comparisons: compare a presented token with crypto/subtle's
//     ConstantTimeCompare against a view; never convert the secret to a
//     string.
//
// # Concurrency
//
// Every method and function is safe for concurrent use. A Shuffler is split
// into shards, each with its own lock, arenas and slots; an entry stays in
// one shard for life, and new entries go to shards chosen per processor, so
// goroutines working on their own entries rarely wait for each other.
// Shuffle and RotateKey work one shard at a time. Return and ReturnView may
// come from any goroutine.
//
// # Platform support
//
// The API is the same everywhere; what the operating system adds differs,
// and [Stats] says what is missing (UnlockedBytes, DumpableBytes,
// KeyOffHeap):
//
//   - Linux: mmap arenas with guard pages, mlock, MADV_DONTDUMP,
//     MADV_WIPEONFORK, transparent huge pages for large arenas, and
//     memfd_secret with [WithSecretMemory].
//   - macOS and the BSDs: mmap arenas with guard pages and mlock; FreeBSD
//     also excludes them from core dumps.
//   - Windows: VirtualAlloc arenas with guard pages and VirtualLock, left
//     out of Windows Error Reporting's crash dumps (Windows 10 version 1703
//     and later); a dump another tool takes on request still includes
//     them.
//   - Anything else: arenas from the Go heap (which the collector does not
//     move), unlocked; entries still encrypted at rest.
//
// The round keys stay off the Go heap on amd64 with AES-NI; elsewhere
// crypto/aes holds them.
package memshuffle
