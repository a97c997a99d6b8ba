// Package memscan is a forensic scanner: it finds every occurrence of a byte
// pattern in the memory of a live process ([ScanProcess], through
// /proc/PID/mem) or in an ELF core file ([ScanCore]), and says which mapping
// each occurrence lies in ([Mapping], with the locked and don't-dump flags
// that tell whether a secret could have reached swap or a core dump).
// [ScanProcessAll] and [ScanCoreAll] look for many patterns in one pass over
// the memory, each with the result its single-pattern scan would give.
//
// Memory that is mostly zeros, such as a core dump of a Go process with its
// address-space reservations written out as zero pages, is scanned at the
// speed of reading it: runs of zero pages and 64-byte lines are found first
// and no pattern with a non-zero byte is looked for inside them, while
// matches that begin or end next to them are still found. Holes in a sparse
// core file are not read at all.
//
// To explain a hit in a core, [OpenCore] opens the file for [Core.ReadAt]
// (the memory at an address), [Core.Threads] (where each thread was
// stopped) and [Core.SignalFrameAt] (the x86-64 signal frame whose saved
// FPU state holds an address, and [SignalFrame.HandledBy], whether a thread
// was still handling it). These read onto the Go heap, so they are for
// pointers and markers, not for the secrets scanned for.
//
// # Threat model
//
// The scanner is used to prove that a secret is gone, so it must not leave
// copies of the secret behind itself, nor find its own copies:
//
//   - A [Pattern] never holds its plaintext: each byte is stored XORed with
//     a random mask byte that differs from it and from zero, and matching
//     compares memory XOR mask with the masked pattern. The plaintext is not
//     rebuilt, not even a byte at a time in a buffer. [NewPattern] does not
//     keep its argument; the caller wipes it. [ReadPattern] reads a pattern
//     into off-heap scratch memory so it never lands on the Go heap at all.
//   - The prefilter is a rolling hash under a random per-pattern table, so
//     the hash is no fingerprint of the secret that outlives the Pattern.
//     The one fact kept about the plaintext is whether it is all zeros,
//     which decides whether zero-filled memory can be skipped.
//   - Scanned memory is read into a buffer mapped outside the Go heap,
//     locked and excluded from core dumps where the system allows, wiped
//     after every chunk and unmapped when the scan ends; when a process scans
//     itself, that buffer's addresses are excluded.
//   - Scanned memory is compared in general registers, at most eight bytes
//     at a time, never loaded into vector registers: a 16- or 32-byte copy
//     left in one would reach a stack whenever a signal frame, a preemption
//     or a first call through the dynamic linker saves the registers, and a
//     later scan would find it there.
//
// It does not defend against an observer of the scanner's own memory while
// it runs: the mask sits next to the masked pattern.
//
// # Concurrency
//
// A Pattern is immutable and may be shared by concurrent scans. Each scan
// has its own buffer and descriptors. The target process keeps running: a
// scan is not a snapshot, and a secret moved while being scanned may be
// seen twice or not at all.
//
// # Platform support
//
// [Maps], [ScanProcess] and [ScanProcessAll] work on Linux, through
// /proc/PID, and on Windows, through VirtualQueryEx and ReadProcessMemory,
// which skips pages the target made PAGE_NOACCESS; elsewhere they return
// [ErrUnsupported]. [ScanCore], [ScanCoreAll] and [ReadPattern] work on any
// Unix and on Windows, since all they need is memory outside the Go heap
// (only Linux reports the holes of sparse files); on other systems they
// return [ErrUnsupported] too. [OpenCore] works everywhere; the threads and
// signal frames it reports are those of x86-64 cores only, and other cores
// return [ErrCoreArch].
package memscan
