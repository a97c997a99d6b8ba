package memshuffleprom

import (
	"fmt"
	"maps"
	"slices"

	"github.com/memshuffle/memshuffle"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
)

// metric describes one exported metric: its name without the namespace,
// its help text, its type, the Stats field it reports and how to read it.
// The field name is not used at run time; the tests check against it that
// every Stats field is exported exactly once.
type metric struct {
	name  string
	help  string
	typ   prometheus.ValueType
	field string
	value func(*memshuffle.Stats) float64
}

// metrics is the single list the descriptors, Collect, the package
// documentation and README.md follow; keep them in this order.
var metrics = []metric{
	// Gauges: the state now.
	{"entries", "Live entries, rented or not.", prometheus.GaugeValue, "Entries",
		func(st *memshuffle.Stats) float64 { return float64(st.Entries) }},
	{"rented_entries", "Entries rented exclusively now, held as plaintext.", prometheus.GaugeValue, "Rented",
		func(st *memshuffle.Stats) float64 { return float64(st.Rented) }},
	{"viewed_entries", "Entries with at least one view open now, held as plaintext.", prometheus.GaugeValue, "Viewed",
		func(st *memshuffle.Stats) float64 { return float64(st.Viewed) }},
	{"live_bytes", "Bytes of live entries.", prometheus.GaugeValue, "LiveBytes",
		func(st *memshuffle.Stats) float64 { return float64(st.LiveBytes) }},
	{"mapped_bytes", "Bytes of arenas mapped from the operating system, guard pages not counted.", prometheus.GaugeValue, "MappedBytes",
		func(st *memshuffle.Stats) float64 { return float64(st.MappedBytes) }},
	{"arenas", "Arenas mapped now.", prometheus.GaugeValue, "Arenas",
		func(st *memshuffle.Stats) float64 { return float64(st.Arenas) }},
	{"slot_bytes", "Bytes of Go heap the slot tables hold, free slots included.", prometheus.GaugeValue, "SlotBytes",
		func(st *memshuffle.Stats) float64 { return float64(st.SlotBytes) }},
	{"backup_bytes", "Bytes of plain memory the authenticated modes' backup buffers hold, kept mapped and wiped between uses, for a copy of an entry's ciphertext while it is decrypted.", prometheus.GaugeValue, "BackupBytes",
		func(st *memshuffle.Stats) float64 { return float64(st.BackupBytes) }},
	{"locked_bytes", "Bytes locked into RAM: arenas, the Shuffler's own region of keys and scratch, the background shuffler's spare regions and secret memory's guard pages.", prometheus.GaugeValue, "LockedBytes",
		func(st *memshuffle.Stats) float64 { return float64(st.LockedBytes) }},
	{"unlocked_bytes", "Bytes the system would not lock into RAM (all of them with LockNone).", prometheus.GaugeValue, "UnlockedBytes",
		func(st *memshuffle.Stats) float64 { return float64(st.UnlockedBytes) }},
	{"lock_limit_bytes", "The most memory the process may lock (RLIMIT_MEMLOCK), -1 if unlimited or no such limit.", prometheus.GaugeValue, "LockLimit",
		func(st *memshuffle.Stats) float64 { return float64(st.LockLimit) }},
	{"dumpable_bytes", "Bytes the Shuffler holds (arenas, keys, backups, spares) not excluded from core dumps.", prometheus.GaugeValue, "DumpableBytes",
		func(st *memshuffle.Stats) float64 { return float64(st.DumpableBytes) }},
	{"shared_dumpable_bytes", "Bytes of the memory all Shufflers of the process share (the inbox, the MACs' memory) not excluded from core dumps; the process's, the same for every Shuffler.", prometheus.GaugeValue, "SharedDumpableBytes",
		func(st *memshuffle.Stats) float64 { return float64(st.SharedDumpableBytes) }},
	{"key_off_heap", "1 if the AES round keys live in the Shuffler's locked, dump-excluded region, 0 if on the Go heap.", prometheus.GaugeValue, "KeyOffHeap",
		func(st *memshuffle.Stats) float64 { return bool01(st.KeyOffHeap) }},
	{"secret_mode", "1 if callbacks given plaintext run inside runtime/secret's secret.Do, 0 otherwise.", prometheus.GaugeValue, "SecretMode",
		func(st *memshuffle.Stats) float64 { return bool01(st.SecretMode) }},
	{"long_rents", "Rents and views held longer than the WithRentTracking threshold now.", prometheus.GaugeValue, "LongRents",
		func(st *memshuffle.Stats) float64 { return float64(st.LongRents) }},
	{"shuffle_max_seconds", "The longest single Shuffle, in seconds.", prometheus.GaugeValue, "ShuffleMax",
		func(st *memshuffle.Stats) float64 { return st.ShuffleMax.Seconds() }},
	{"background_step_max_seconds", "The longest a background shuffle step held a shard, in seconds.", prometheus.GaugeValue, "BackgroundMax",
		func(st *memshuffle.Stats) float64 { return st.BackgroundMax.Seconds() }},

	// Counters: they only grow, also across Close.
	{"shuffles_total", "Completed calls to Shuffle.", prometheus.CounterValue, "Shuffles",
		func(st *memshuffle.Stats) float64 { return float64(st.Shuffles) }},
	{"shuffle_seconds_total", "Total time spent in Shuffle, in seconds.", prometheus.CounterValue, "ShuffleTime",
		func(st *memshuffle.Stats) float64 { return st.ShuffleTime.Seconds() }},
	{"arenas_released_total", "Arenas returned to the operating system.", prometheus.CounterValue, "ArenasReleased",
		func(st *memshuffle.Stats) float64 { return float64(st.ArenasReleased) }},
	{"moved_bytes_total", "Bytes of entries moved by Shuffle, background shuffling, shuffle-on-return and compaction.", prometheus.CounterValue, "BytesMoved",
		func(st *memshuffle.Stats) float64 { return float64(st.BytesMoved) }},
	{"key_rotations_total", "Completed key rotations, by RotateKey or WithKeyRotation.", prometheus.CounterValue, "KeyRotations",
		func(st *memshuffle.Stats) float64 { return float64(st.KeyRotations) }},
	{"key_rotations_failed_total", "Scheduled key rotations (WithKeyRotation) that failed.", prometheus.CounterValue, "KeyRotationsFailed",
		func(st *memshuffle.Stats) float64 { return float64(st.KeyRotationsFailed) }},
	{"lock_failures_total", "Mappings the operating system refused to lock into RAM.", prometheus.CounterValue, "LockFailures",
		func(st *memshuffle.Stats) float64 { return float64(st.LockFailures) }},
	{"long_rents_seen_total", "Rents and views reported as held longer than the WithRentTracking threshold.", prometheus.CounterValue, "LongRentsSeen",
		func(st *memshuffle.Stats) float64 { return float64(st.LongRentsSeen) }},
	{"expired_entries_total", "Entries wiped because their expiry passed.", prometheus.CounterValue, "Expired",
		func(st *memshuffle.Stats) float64 { return float64(st.Expired) }},
	{"authentication_failures_total", "Failed authentications of a Rent, a View or a key rotation's re-encryption (authenticated ciphers only).", prometheus.CounterValue, "Tampered",
		func(st *memshuffle.Stats) float64 { return float64(st.Tampered) }},
	{"background_cycles_total", "Completed background shuffle cycles.", prometheus.CounterValue, "BackgroundCycles",
		func(st *memshuffle.Stats) float64 { return float64(st.BackgroundCycles) }},
	{"background_steps_total", "Background shuffle steps, each holding one shard briefly.", prometheus.CounterValue, "BackgroundSteps",
		func(st *memshuffle.Stats) float64 { return float64(st.BackgroundSteps) }},
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

type collector struct {
	s     *memshuffle.Shuffler
	descs []*prometheus.Desc
	// err is the first error in building the descriptors, from an invalid
	// namespace or label. Registering the collector then fails with it, and
	// Collect reports it instead of panicking in MustNewConstMetric.
	err error
}

// NewCollector returns a prometheus.Collector that reports s.Stats() on
// every scrape: each Collect takes one snapshot, so the figures of one
// scrape come from the same call. The collector holds s but never closes
// it; after s.Close the gauges read zero (but for the five the package
// documentation names) and the counters keep their values. It starts no
// goroutine and is safe for concurrent use, as
// Prometheus requires.
//
// An invalid namespace or label (see WithNamespace, WithConstLabels), or a
// nil s, does not panic: registering the collector returns the error,
// wrapping memshuffle.ErrInvalidOption or memshuffle.ErrNilArgument, and
// Collect reports it as invalid metrics. Names must be valid in
// Prometheus's classic format, letters, digits, underscores and colons,
// not starting with a digit: a scrape served in that format escapes any
// other character to an underscore, so that "a b" and "a_b" would make
// the same names.
//
// The package documentation lists the metrics. None carries a secret, a key
// or an address.
func NewCollector(s *memshuffle.Shuffler, opts ...Option) prometheus.Collector {
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o.apply(&cfg)
		}
	}
	c := &collector{s: s, descs: make([]*prometheus.Desc, len(metrics))}
	c.err = cfg.check(s)
	for i, m := range metrics {
		name := prometheus.BuildFQName(cfg.namespace, "", m.name)
		if c.err == nil && !model.LegacyValidation.IsValidMetricName(name) {
			c.err = fmt.Errorf("%w: namespace %q makes the metric name %q", memshuffle.ErrInvalidOption, cfg.namespace, name)
		}
		d := prometheus.NewDesc(name, m.help, nil, cfg.constLabels)
		if err := d.Err(); err != nil && c.err == nil {
			c.err = err
		}
		c.descs[i] = d
	}
	if c.err != nil {
		// Registering fails only on a descriptor that carries an error.
		for i := range c.descs {
			c.descs[i] = prometheus.NewInvalidDesc(c.err)
		}
	}
	return c
}

// check returns the error of a nil s or of a constant label whose name
// is not valid in the classic format.
func (cfg *config) check(s *memshuffle.Shuffler) error {
	if s == nil {
		return fmt.Errorf("%w: NewCollector of a nil Shuffler", memshuffle.ErrNilArgument)
	}
	for _, k := range slices.Sorted(maps.Keys(cfg.constLabels)) {
		if !model.LegacyValidation.IsValidLabelName(k) {
			return fmt.Errorf("%w: constant label name %q", memshuffle.ErrInvalidOption, k)
		}
	}
	return nil
}

// Describe sends the descriptor of every metric, so registering checks
// them and rejects a second collector with the same names and labels.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect sends one value per metric from a single Stats snapshot.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	if c.err != nil {
		for _, d := range c.descs {
			ch <- prometheus.NewInvalidMetric(d, c.err)
		}
		return
	}
	st := c.s.Stats()
	c.collect(&st, ch)
}

// collect is Collect on a given snapshot, so tests can feed every field.
// The descriptors are valid and have no variable labels, so
// MustNewConstMetric cannot panic here.
func (c *collector) collect(st *memshuffle.Stats, ch chan<- prometheus.Metric) {
	for i, m := range metrics {
		ch <- prometheus.MustNewConstMetric(c.descs[i], m.typ, m.value(st))
	}
}
