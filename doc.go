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
// [ErrTypeMismatch], [ErrInvalidSize], [ErrOutOfMemory], [ErrLockFailed].
// No input makes a call panic.
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
// does not defend against side channels. The AES key schedule is held by
// crypto/aes on the Go heap; anyone who can read the live heap can find it.
// SECURITY.md has the full model and how each claim is tested.
//
// # Concurrency
//
// Every method and function is safe for concurrent use. A Shuffler is split
// into shards, each with its own lock, arenas and slots; an entry stays in
// one shard for life, so Rent and Return of entries in different shards do
// not wait for each other. Shuffle and RotateKey work one shard at a time.
// A rent is exclusive: a second Rent of a rented entry returns [ErrBusy]
// rather than sharing the plaintext, and Return may come from any goroutine.
//
// # Platform support
//
// Arenas are mapped with mmap on every Unix system (Linux, macOS, the BSDs)
// with guard pages and mlock; exclusion from core dumps and forked children
// uses madvise on Linux. Other systems fall back to memory from the Go heap,
// which the collector does not move, with entries still encrypted at rest;
// [Stats] then reports the memory as unlocked.
package memshuffle
