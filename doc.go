// Package memshuffle keeps secrets and other sensitive values encrypted in
// memory outside the Go heap, and hands them out only for as long as a
// caller needs them.
//
// # The model
//
// A [Shuffler] holds entries. [Alloc] and [Create] make an entry and return a
// [Handle]: an opaque value, not a pointer. Entries live in arenas mapped
// from the operating system, so the garbage collector never scans, copies or
// frees them, and every entry is encrypted at rest from the moment it
// exists: with AES-256-CTR by default, or an authenticated [Cipher].
//
// To use a value, rent it: [Rent] or [RentSlice] decrypts the entry in place
// and returns a typed pointer or slice into it. [Shuffler.Return] encrypts it
// again, under a counter run no other encryption has used, and ends the rent.
// A rented entry never moves; everything else may:
// [Shuffler.Shuffle] moves every unrented entry to a uniformly random new
// place (in fresh memory, or within the arenas a large shard fills; where
// the system refuses memory, among the places of entries of its size), wipes
// what they left behind and gives empty arenas back to the operating system. With [Shuffler.SetShuffleOnBorrowReturn] each Return
// moves the returned entry too. [Shuffler.RotateKey] re-encrypts everything
// under a new key without losing data, and [WithKeyRotation] does so on a
// schedule. [Shuffler.Free] wipes an entry at
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
//	// (check each err as above)
//
// Values must be plain data: no Go pointers, strings, slices, maps,
// channels, functions or interfaces anywhere inside them, because memory
// outside the heap is invisible to the garbage collector. Such types fail
// with [ErrUnsupportedType]; fixed-size arrays and structs of numbers are
// fine. Bools fail too: an entry's bytes may hold anything, and a bool that
// is not 0 or 1 breaks the compiler's assumptions; hold a flag in a uint8.
//
// Every error the package raises itself is a sentinel that works with
// [errors.Is]: [ErrInvalidHandle],
// [ErrBusy], [ErrNotRented], [ErrClosed], [ErrUnsupportedType],
// [ErrTypeMismatch], [ErrInvalidSize], [ErrOutOfMemory], [ErrLockFailed],
// [ErrNoSecretMemory], [ErrExpired], [ErrTampered], [ErrInvalidOption],
// [ErrCounterExhausted], [ErrNilArgument], [ErrBackgroundRunning],
// [ErrNameTaken], [ErrInvalidKey], [ErrAuthFailed], [ErrBufferOverlap], [ErrInvalidCount],
// [ErrTooLarge], [ErrRotationIncomplete], [ErrPanicked], [ErrUnsupported],
// or io's [io.ErrUnexpectedEOF], [io.ErrShortWrite] and [io.ErrNoProgress]
// for short input, a short write and a reader stuck at no progress; an
// error of an io.Reader, io.Writer or context the caller passes in is
// returned, wrapped or as is, and so is the system's error where it
// refuses to take back memory (Close, Shuffle) or to change the process's
// limits (DisableCoreDumps). No input makes a call panic.
//
// A rent belongs to its handle, not to a goroutine (Return may come from any
// goroutine), so Return exactly once per Rent: a second Return gets
// [ErrNotRented] only while nobody else has rented the entry since, and
// otherwise ends that other rent. The Borrow functions return exactly once.
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
// copy on the Go heap. An entry is aligned to the largest power of two
// dividing its size, up to [EntryAlign] bytes, so a byte entry can be
// rented whole as a []uint64 when its size is a multiple of 8, or as a
// struct of its size. [PurgeAll],
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
// move, and rest between bursts of work, so they take a small share of one
// CPU (0.14-0.15 for a background cycle, bench/NOTES.md; the pacer's
// tests fail above 0.6) and leave the rest to the goroutines that use the
// Shuffler; a
// scheduled [WithKeyRotation] does the same. [Shuffler.Stats] counts what operators need;
// [Shuffler.PublishExpvar] serves it through expvar, the exporters/prometheus
// module as Prometheus metrics, and [WithLogger] reports rotations, refused
// locks, tampering and long rents.
//
// # Borrowing
//
// [Borrow], [BorrowSlice], [BorrowView] and [BorrowViewSlice] rent, call a
// function and return, also when the function panics, so a Return cannot be
// forgotten. A rent is exclusive: a second [Rent] of a rented entry returns
// [ErrBusy] rather than sharing the plaintext. For a value many goroutines
// read at once (an API key every request checks), [View] and [ViewSlice]
// share one decryption among any number of readers; the last
// [Shuffler.ReturnView] encrypts it again. [RentContext] and [ViewContext],
// and [BorrowContext], [BorrowSliceContext], [BorrowViewContext] and
// [BorrowViewSliceContext], wait for a busy entry until a context is done
// (or the entry's expiry passes) instead of failing. A
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
// Go's crypto packages take keys as []byte or as their own key types, copy
// them, and leave the copies on the heap, unwiped, when they are done. Use
// the adapters instead of handing them rented memory:
//
//   - [ReadPrivateKey] reads a PEM or DER private key (PKCS#8, PKCS#1,
//     SEC 1) into a new entry as PKCS#8 DER, and [NewSigner] makes a
//     crypto.Signer of it (Ed25519; ECDSA P-256, P-384, P-521; RSA 2048 to
//     4096 bits), which works as tls.Certificate's PrivateKey and with
//     x509.CreateCertificate. Sign parses the key out of a view for each
//     signature.
//   - [MAC] computes an HMAC with a key held in an entry, without the two
//     padded copies of the key hmac.New keeps.
//   - [NewAEAD] seals and opens with AES-GCM under a key held in an entry,
//     building the key schedule for each call and zeroing it after.
//
// What they leave behind depends on the build. TestAdapterCopies counts
// every form of a key that gives it away, after 1,000 operations of each
// adapter and a garbage collection, in every readable mapping of the
// process outside the Shuffler's locked, dump-excluded arenas (the same
// counts in a gcore dump). Runs on linux/amd64 with Go 1.26.8 (six, or
// the number given, one of them as an unprivileged user), in a default
// build (go test -run TestAdapterCopies -v):
//
//   - MAC (HMAC-SHA256): 0 copies of the key, of key XOR ipad and of key
//     XOR opad, in every run. For comparison, hmac.New inside
//     [BorrowViewSlice] left 371 to 542 of each padded block after 50,000
//     MACs in three default runs (examples/jwt's TestKeyCopies, go test
//     -run TestKeyCopies -v ./examples/jwt; its README gives each run).
//   - AEAD Seal and Open (AES-256-GCM): 0 copies of the key and of its last
//     round key, in every run. Without the zeroing of the schedule (its two
//     wipePointee calls removed), 1,000 calls left 13 and 26, then 28 and
//     56.
//   - Ed25519 Sign: 1 copy of the seed and 1 of the nonce prefix, none of
//     the secret scalar in its byte form, in every run; the same cache
//     entry holds the scalar in edwards25519's own form, which this test
//     does not search for and which gives nothing the seed beside it does
//     not. crypto/ed25519
//     caches every key it signs with, expanded, under a weak pointer to
//     the key's first byte, and never wipes the cache. The Signer signs
//     from one heap buffer for its whole life, so the cache holds one
//     copy; a buffer per signature would leave one per signature until the
//     memory is reused. (The key cannot be the entry itself: a weak
//     pointer into memory the runtime does not manage aborts the process,
//     in any build.)
//   - ECDSA P-256 Sign: 4 copies of d in each of four runs (one as the
//     unprivileged user). crypto/ecdsa converts a key to its FIPS
//     module's form (the scalar as bytes) and caches that, never wiped,
//     under a weak pointer to the *ecdsa.PrivateKey; the Signer signs from
//     a pool of keys it reuses, one while signatures come one at a time
//     and never more than GOMAXPROCS, so the cache holds one copy per key
//     of the pool (a key per signature left 15 to 109 after the
//     collection, and hundreds before it). The other 3 are what
//     crypto/x509's parse of the key in NewSigner left. Each signature also leaves its nonce on the heap,
//     where nothing can wipe it, and a nonce with its signature, which is
//     public, gives the private key: of the nonces of 50 of the 1,000
//     signatures, earlier runs found 0 to 6 big-endian and 0 or 1 as
//     little-endian words (44 of the 1,000 in a run that looked for all
//     of them). The runtime's register save areas can hold d's words too,
//     in two halves, after a signature was preempted (SECURITY.md: 7 of
//     30 runs of a busy signer, none with GODEBUG=asyncpreemptoff=1).
//   - RSA-2048 Sign: 3 to 6 copies of each of d, p and q big-endian and 2
//     to 5 as little-endian words, in three runs (one as the unprivileged
//     user). The Signer parses the key once for each key of its pool and
//     keeps it, math/big's words and crypto/rsa's precomputed FIPS form,
//     two copies as words per key; the big-endian ones are what
//     crypto/x509's parses left. A parse per signature left 18 to 338 and
//     6 to 52. Of the CRT values, each key of the pool keeps dP and dQ
//     once as words and once big-endian (the FIPS form keeps them as
//     bytes), and qInv twice as words; either of dP and dQ factors the
//     modulus. One run found 3 of each big-endian and 1 or 2 as words.
//
// How many copies of ECDSA and RSA keys are found depends on when the
// collector last ran and what has reused the memory since.
//
// # Secret mode
//
// Go 1.26 has runtime/secret behind GOEXPERIMENT=runtimesecret, for
// linux/amd64 and linux/arm64: secret.Do(f) erases the registers and the
// stack f used, the signal frames of signals that arrive while it runs (when
// the next garbage collection starts; until then a dump finds them), and
// the heap allocations f made once they are unreachable. Build with it and
// [SecretMode] reports true (as does [Stats].SecretMode), and every callback
// the library runs with plaintext runs inside secret.Do: the Borrow
// functions, the fill of [ReadFrom] and [CopyFrom], and the adapters'
// parsing, signing and hashing. No code changes:
//
//	GOEXPERIMENT=runtimesecret go build ./...
//
// In secret mode TestAdapterCopies finds 0 copies of every form above, in
// the live process and in a core dump, and fails if it finds any, but for
// what a Signer in use keeps: one copy of the Ed25519 seed and prefix in
// crypto/ed25519's cache, one of the ECDSA scalar per key of the pool in
// crypto/ecdsa's, and the RSA pool's parsed keys (d, p, q and qInv as
// math/big's words and in crypto/rsa's FIPS form, dP and dQ as words and
// big-endian in the FIPS form), all made inside secret.Do and
// erased once the Signer is gone. Purge and Close do not reach those: drop
// the Signer. Even hmac.New inside BorrowViewSlice leaves none once
// collected.
//
// Erasure of heap memory waits for the garbage collector: a copy stays
// readable until the collection (for a cache entry, the second
// collection) after it became unreachable, so a dump of a busy process
// holds what the standard library copied since. That is why the Signers
// reuse their keys: TestAdapterCopies' busy phase, four goroutines signing
// with Ed25519, ECDSA and RSA, MACing and sealing while the collector runs
// without pause, found in a core dump 721 copies of the Ed25519 seed with
// a key buffer per signature (in secret mode), and in either build 126 to
// 659 of the ECDSA scalar with a key per signature and 168 to 463 of each
// of RSA's d, p and q with a parse per signature. With the pools it finds no copy of MAC's
// key or pads, one or two of the Ed25519 seed and prefix (the cache entry
// and the signature under way; the test allows three), 2 to 6 of the ECDSA
// scalar (one per key of the pool and, in a default build, the 3
// NewSigner's parse left; it allows 2 x GOMAXPROCS + 3), and none of RSA's
// d, p, q and qInv big-endian and two as words per key of the pool (4 to 8
// seen), and dP and dQ once as words and once big-endian per key.
// TestMACInFlightPads dumps a process MACing with SHA-256 and SHA-512 on
// three goroutines eight times (six reads of its memory, two gcore
// dumps): no padded block of the key, where a pad and two hashes on the
// heap put one in 1 to 4 of the dumps in each of three runs; the hashes'
// states turn up 0 to 3 times, in the frames of crypto's Sum, which copies
// a state there until the call's stack is zeroed at its end.
// An AEAD call under way holds its key schedule on the Go heap (two copies
// of the key in one of the busy dumps). SECURITY.md ("Preemption during an
// AEAD call") has what secret mode costs.
//
// What neither build can protect:
//
//   - a secret turned into a string, or passed to a function that keeps it
//     in a global, a cache that outlives the call, or a buffer of its own
//     (a bufio.Reader's, say): secret.Do does not reach globals, and a
//     value still reachable is not erased;
//   - goroutines a callback starts, which run outside secret.Do;
//   - what a callback returns or stores where the program can reach it (a
//     signature is fine; the key is not);
//   - the plaintext in the arena while it is rented, and the default
//     cipher's work (AES-CTR, whose own assembly guards its registers),
//     which runs outside secret.Do; the AEAD modes' calls run inside it,
//     where the runtime does not preempt them asynchronously and so never
//     saves the registers holding their keys (the default build pins the
//     calls on entries of up to 256 KiB to their P for the same end; see
//     SECURITY.md);
//   - comparisons you write yourself: compare a presented token with
//     Equal (or two entries with EqualEntries), whose constant-time
//     comparison is signal-guarded assembly; inside a callback, with
//     crypto/subtle's ConstantTimeCompare or hmac.Equal against the view;
//     never by converting the secret to a string.
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
// Close and Purge may run while other goroutines use the Shuffler, or from
// inside a Borrow function's callback. The Borrow functions, ReadFrom,
// CopyFrom, ReadAll, ReadUntil and WriteTo keep the memory they lend mapped
// until their callback or transfer ends, then wipe it and report
// [ErrClosed]; a pointer from Rent or View has no such guard, and using it
// after Close faults.
//
// # Platform support
//
// The API is the same everywhere; what the operating system adds differs,
// and [Stats] says what is missing (UnlockedBytes, DumpableBytes,
// KeyOffHeap):
//
//   - Linux: mmap arenas with guard pages, mlock, MADV_DONTDUMP,
//     MADV_WIPEONFORK, transparent huge pages for large arenas, and
//     memfd_secret with [WithSecretMemory] on the architectures whose
//     kernel has it (386, amd64, arm64, loong64, riscv64, s390x; elsewhere
//     New with [WithSecretMemory] fails with
//     [ErrNoSecretMemory]).
//   - Solaris, illumos and AIX: mmap arenas with guard pages and mlock,
//     with no RLIMIT_MEMLOCK to report ([Stats].LockLimit is -1).
//   - macOS and the BSDs: mmap arenas with guard pages and mlock; FreeBSD
//     and DragonFly also exclude them from core dumps.
//   - Windows: VirtualAlloc arenas with guard pages and VirtualLock, left
//     out of Windows Error Reporting's crash dumps (Windows 10 version 1703
//     and later); a dump another tool takes on request still includes
//     them.
//   - Anything else: arenas from the Go heap (which the collector does not
//     move), unlocked; entries still encrypted at rest.
//
// The round keys stay off the Go heap on amd64 with AES-NI; elsewhere
// crypto/aes holds them (on s390x, the key itself or the schedule, behind
// pointers the library's wipes follow). On Linux other protections depend
// on the architecture too: the signal guard is amd64's; amd64, arm64 and
// 32-bit arm have the assembly that keeps a secret out of the stacks the
// runtime frees, and the other architectures do not. SECURITY.md has the
// table.
package memshuffle
