// Package memshuffleprom exports the [memshuffle.Shuffler.Stats] of a
// Shuffler as Prometheus metrics. It lives in a module of its own,
// github.com/memshuffle/memshuffle/exporters/prometheus, so that programs
// using memshuffle without Prometheus do not build or download
// client_golang.
//
//	s, err := memshuffle.New()
//	...
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(memshuffleprom.NewCollector(s,
//		memshuffleprom.WithConstLabels(prometheus.Labels{"shuffler": "sessions"})))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Each scrape calls Stats once, so the values of one scrape come from one
// snapshot. Nothing is computed between scrapes and no goroutine is started.
//
// # Secrets
//
// No metric carries a secret, a key, a handle or an address: only counts,
// sizes in bytes, durations in seconds and the 0/1 flags key_off_heap and secret_mode, the
// same figures Stats and Shuffler.PublishExpvar give. The only strings in
// the output are the metric names, their help texts and the constant labels
// the caller chooses with [WithConstLabels].
//
// # Metrics
//
// With the default namespace "memshuffle" (see [WithNamespace]); the Stats
// field each one reports is in parentheses.
//
// Gauges, the state at the scrape:
//
//   - memshuffle_entries: live entries, rented or not (Entries).
//   - memshuffle_rented_entries: entries rented exclusively now, so held
//     as plaintext (Rented).
//   - memshuffle_viewed_entries: entries with at least one view open now,
//     so held as plaintext (Viewed).
//   - memshuffle_live_bytes: bytes of live entries (LiveBytes).
//   - memshuffle_mapped_bytes: bytes of arenas mapped from the operating
//     system, guard pages not counted (MappedBytes).
//   - memshuffle_arenas: arenas mapped now (Arenas).
//   - memshuffle_slot_bytes: bytes of Go heap the slot tables hold, free
//     slots included (SlotBytes).
//   - memshuffle_backup_bytes: bytes of plain memory the authenticated
//     modes' backup buffers hold, kept mapped and wiped between uses, for a
//     copy of an entry's ciphertext while it is decrypted (BackupBytes).
//   - memshuffle_locked_bytes: bytes locked into RAM, arenas, the
//     Shuffler's own region of keys and scratch, the background shuffler's
//     spare regions and secret memory's guard pages (LockedBytes).
//   - memshuffle_unlocked_bytes: bytes the system would not lock, or all of
//     them with LockNone (UnlockedBytes). Above zero, entries may be written
//     to swap, encrypted.
//   - memshuffle_lock_limit_bytes: the most memory the process may lock,
//     RLIMIT_MEMLOCK, or -1 if unlimited (LockLimit).
//   - memshuffle_dumpable_bytes: bytes the Shuffler holds (arenas, keys,
//     backups, spares) not excluded from core dumps (DumpableBytes); zero
//     on Linux unless the system refuses MADV_DONTDUMP.
//   - memshuffle_shared_dumpable_bytes: bytes of the memory all Shufflers
//     of the process share (the inbox, the MACs' memory) not excluded from
//     core dumps (SharedDumpableBytes); the process's, the same for every
//     Shuffler, so not to be summed across them.
//   - memshuffle_key_off_heap: 1 if the AES round keys live in the
//     Shuffler's locked, dump-excluded region, 0 if crypto/aes keeps them on
//     the Go heap (KeyOffHeap).
//   - memshuffle_secret_mode: 1 if callbacks given plaintext run inside
//     runtime/secret's secret.Do (a GOEXPERIMENT=runtimesecret build), 0
//     otherwise (SecretMode).
//   - memshuffle_long_rents: rents and views held longer than the
//     WithRentTracking threshold now; 0 without rent tracking (LongRents).
//   - memshuffle_shuffle_max_seconds: the longest single Shuffle, in seconds
//     (ShuffleMax).
//   - memshuffle_background_step_max_seconds: the longest a background
//     shuffle step held a shard, in seconds (BackgroundMax).
//
// Counters, which only grow, also after Close:
//
//   - memshuffle_shuffles_total: completed calls to Shuffle (Shuffles).
//   - memshuffle_shuffle_seconds_total: total time spent in Shuffle, in
//     seconds (ShuffleTime); divided by memshuffle_shuffles_total over an
//     interval it gives the mean duration.
//   - memshuffle_arenas_released_total: arenas returned to the operating
//     system (ArenasReleased).
//   - memshuffle_moved_bytes_total: bytes of entries moved by Shuffle,
//     background shuffling, shuffle-on-return and compaction (BytesMoved).
//   - memshuffle_key_rotations_total: completed key rotations, by RotateKey
//     or WithKeyRotation (KeyRotations).
//   - memshuffle_key_rotations_failed_total: scheduled key rotations
//     (WithKeyRotation) that failed (KeyRotationsFailed).
//   - memshuffle_lock_failures_total: mappings the operating system refused
//     to lock into RAM (LockFailures).
//   - memshuffle_long_rents_seen_total: rents and views reported as held
//     longer than the WithRentTracking threshold (LongRentsSeen).
//   - memshuffle_expired_entries_total: entries wiped because their expiry
//     passed (Expired).
//   - memshuffle_authentication_failures_total: failed authentications,
//     with the authenticated ciphers only (Tampered): of a Rent or View,
//     and of a key rotation's re-encryption, which meets a tampered entry
//     again at every rotation until it is freed. Any increase deserves an
//     alert.
//   - memshuffle_background_cycles_total: completed background shuffle
//     cycles (BackgroundCycles).
//   - memshuffle_background_steps_total: background shuffle steps, each
//     holding one shard briefly (BackgroundSteps).
//
// After Close the gauges read zero and the counters keep their values, as
// Stats does, but for five gauges that keep theirs: lock_limit_bytes,
// secret_mode and key_off_heap, which describe the process, the build and
// the key, and
// shuffle_max_seconds and background_step_max_seconds, the longest pauses
// the Shuffler took.
package memshuffleprom
