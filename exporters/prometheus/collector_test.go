package memshuffleprom_test

import (
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/memshuffle/memshuffle"
	memshuffleprom "github.com/memshuffle/memshuffle/exporters/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// numMetrics is the number of metrics one collector reports; the in-package
// tests tie it to the Stats fields.
const numMetrics = 30

// newShuffler returns a Shuffler closed at the end of the test.
func newShuffler(t *testing.T) *memshuffle.Shuffler {
	t.Helper()
	s, err := memshuffle.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// busyShuffler returns a Shuffler holding three 32-byte entries and one
// uint64 (104 bytes live), after one Shuffle and one RotateKey.
func busyShuffler(t *testing.T) (*memshuffle.Shuffler, []memshuffle.Handle) {
	t.Helper()
	s := newShuffler(t)
	var hs []memshuffle.Handle
	for range 3 {
		h, err := memshuffle.Alloc[byte](s, 32)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	h, err := memshuffle.Create[uint64](s)
	if err != nil {
		t.Fatal(err)
	}
	hs = append(hs, h)
	if err := s.Shuffle(); err != nil {
		t.Fatal(err)
	}
	if err := s.RotateKey(nil, nil); err != nil {
		t.Fatal(err)
	}
	return s, hs
}

func TestCollectorValues(t *testing.T) {
	t.Parallel()
	s, hs := busyShuffler(t)
	c := memshuffleprom.NewCollector(s)

	if n := testutil.CollectAndCount(c); n != numMetrics {
		t.Errorf("CollectAndCount = %d, want %d", n, numMetrics)
	}

	// One entry rented and one viewed twice, so rented_entries and
	// viewed_entries each read 1 during the scrape.
	if _, err := memshuffle.RentSlice[byte](s, hs[0]); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := memshuffle.ViewSlice[byte](s, hs[1]); err != nil {
			t.Fatal(err)
		}
	}
	const want = `
# HELP memshuffle_entries Live entries, rented or not.
# TYPE memshuffle_entries gauge
memshuffle_entries 4
# HELP memshuffle_rented_entries Entries rented exclusively now, held as plaintext.
# TYPE memshuffle_rented_entries gauge
memshuffle_rented_entries 1
# HELP memshuffle_viewed_entries Entries with at least one view open now, held as plaintext.
# TYPE memshuffle_viewed_entries gauge
memshuffle_viewed_entries 1
# HELP memshuffle_live_bytes Bytes of live entries.
# TYPE memshuffle_live_bytes gauge
memshuffle_live_bytes 104
# HELP memshuffle_shuffles_total Completed calls to Shuffle.
# TYPE memshuffle_shuffles_total counter
memshuffle_shuffles_total 1
# HELP memshuffle_key_rotations_total Completed key rotations, by RotateKey or WithKeyRotation.
# TYPE memshuffle_key_rotations_total counter
memshuffle_key_rotations_total 1
# HELP memshuffle_expired_entries_total Entries wiped because their expiry passed.
# TYPE memshuffle_expired_entries_total counter
memshuffle_expired_entries_total 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"memshuffle_entries", "memshuffle_rented_entries", "memshuffle_viewed_entries", "memshuffle_live_bytes",
		"memshuffle_shuffles_total", "memshuffle_key_rotations_total",
		"memshuffle_expired_entries_total"); err != nil {
		t.Error(err)
	}
	if err := s.Return(hs[0]); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.ReturnView(hs[1]); err != nil {
			t.Fatal(err)
		}
	}

	// Values that depend on the machine: check how they relate to Stats.
	st := s.Stats()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	got := gather(t, reg)
	for name, want := range map[string]float64{
		"memshuffle_rented_entries": 0,
		"memshuffle_viewed_entries": 0,
		"memshuffle_mapped_bytes":   float64(st.MappedBytes),
		"memshuffle_arenas":         float64(st.Arenas),
		"memshuffle_slot_bytes":     float64(st.SlotBytes),
		"memshuffle_backup_bytes":   float64(st.BackupBytes),
		"memshuffle_locked_bytes":   float64(st.LockedBytes),
		"memshuffle_key_off_heap":   map[bool]float64{false: 0, true: 1}[st.KeyOffHeap],
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	total, longest := got["memshuffle_shuffle_seconds_total"], got["memshuffle_shuffle_max_seconds"]
	if total < 0 || longest < 0 || longest > total || math.IsInf(total, 0) || math.IsNaN(total) {
		t.Errorf("shuffle_seconds_total = %v, shuffle_max_seconds = %v after one Shuffle", total, longest)
	}
	if got["memshuffle_mapped_bytes"] < got["memshuffle_live_bytes"] {
		t.Errorf("mapped_bytes %v < live_bytes %v", got["memshuffle_mapped_bytes"], got["memshuffle_live_bytes"])
	}
}

// gather returns the value of every unlabelled-or-single series by name.
func gather(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	vals := make(map[string]float64)
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		switch {
		case m.Gauge != nil:
			vals[mf.GetName()] = m.GetGauge().GetValue()
		case m.Counter != nil:
			vals[mf.GetName()] = m.GetCounter().GetValue()
		default:
			t.Errorf("%s is neither a gauge nor a counter", mf.GetName())
		}
	}
	return vals
}

func TestCollectorLint(t *testing.T) {
	t.Parallel()
	s, _ := busyShuffler(t)
	for _, opts := range [][]memshuffleprom.Option{
		nil,
		{memshuffleprom.WithNamespace("app"), memshuffleprom.WithConstLabels(prometheus.Labels{"shuffler": "sessions"})},
	} {
		problems, err := testutil.CollectAndLint(memshuffleprom.NewCollector(s, opts...))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

// Several Shufflers go on one registry, told apart by a constant label.
func TestCollectorConstLabels(t *testing.T) {
	t.Parallel()
	a, _ := busyShuffler(t)
	b := newShuffler(t)
	if _, err := memshuffle.Create[uint64](b); err != nil {
		t.Fatal(err)
	}

	labels := prometheus.Labels{"shuffler": "a"}
	ca := memshuffleprom.NewCollector(a, memshuffleprom.WithNamespace("app"), memshuffleprom.WithConstLabels(labels))
	labels["shuffler"] = "changed" // the option copied the map
	cb := memshuffleprom.NewCollector(b, memshuffleprom.WithNamespace("app"),
		memshuffleprom.WithConstLabels(prometheus.Labels{"shuffler": "x", "team": "auth"}),
		memshuffleprom.WithConstLabels(prometheus.Labels{"shuffler": "b"}))

	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(ca); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(cb); err == nil {
		t.Error("registering collectors with different label names succeeded")
	}
	cb = memshuffleprom.NewCollector(b, memshuffleprom.WithNamespace("app"),
		memshuffleprom.WithConstLabels(prometheus.Labels{"shuffler": "b"}))
	if err := reg.Register(cb); err != nil {
		t.Fatal(err)
	}
	// The same Shuffler and labels twice is a duplicate, caught by Describe.
	err := reg.Register(memshuffleprom.NewCollector(b, memshuffleprom.WithNamespace("app"),
		memshuffleprom.WithConstLabels(prometheus.Labels{"shuffler": "b"})))
	if !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
		t.Errorf("registering a duplicate: %v, want AlreadyRegisteredError", err)
	}

	const want = `
# HELP app_entries Live entries, rented or not.
# TYPE app_entries gauge
app_entries{shuffler="a"} 4
app_entries{shuffler="b"} 1
# HELP app_key_rotations_total Completed key rotations, by RotateKey or WithKeyRotation.
# TYPE app_key_rotations_total counter
app_key_rotations_total{shuffler="a"} 1
app_key_rotations_total{shuffler="b"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "app_entries", "app_key_rotations_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 2*numMetrics {
		t.Errorf("GatherAndCount = %d, %v; want %d", n, err, 2*numMetrics)
	}
}

// A bad label or namespace, or a nil Shuffler, is an error at
// registration and in Collect, never a panic. Names must be valid in the
// classic format: "a b" and "a_b" registered on one registry side by side,
// and a scrape escaped the first into the second, twice the same names.
func TestCollectorInvalidLabel(t *testing.T) {
	t.Parallel()
	s := newShuffler(t)
	for name, c := range map[string]struct {
		s    *memshuffle.Shuffler
		opt  memshuffleprom.Option
		want error // nil: any error
	}{
		"value not UTF-8":         {s, memshuffleprom.WithConstLabels(prometheus.Labels{"shuffler": "\xff"}), nil},
		"reserved name":           {s, memshuffleprom.WithConstLabels(prometheus.Labels{"__name": "x"}), nil},
		"label name with a dash":  {s, memshuffleprom.WithConstLabels(prometheus.Labels{"a-b": "x"}), memshuffle.ErrInvalidOption},
		"label name of a digit":   {s, memshuffleprom.WithConstLabels(prometheus.Labels{"1a": "x"}), memshuffle.ErrInvalidOption},
		"namespace with a dash":   {s, memshuffleprom.WithNamespace("bad-name"), memshuffle.ErrInvalidOption},
		"namespace of a digit":    {s, memshuffleprom.WithNamespace("1abc"), memshuffle.ErrInvalidOption},
		"namespace with a space":  {s, memshuffleprom.WithNamespace("a b"), memshuffle.ErrInvalidOption},
		"namespace not ASCII":     {s, memshuffleprom.WithNamespace("é"), memshuffle.ErrInvalidOption},
		"nil Shuffler":            {nil, nil, memshuffle.ErrNilArgument},
		"nil Shuffler, bad label": {nil, memshuffleprom.WithConstLabels(prometheus.Labels{"a-b": "x"}), memshuffle.ErrNilArgument},
	} {
		c, want := memshuffleprom.NewCollector(c.s, c.opt), c.want
		err := prometheus.NewRegistry().Register(c)
		if err == nil || want != nil && !errors.Is(err, want) {
			t.Errorf("%s: Register = %v, want %v", name, err, want)
		}
		// Room for more than expected, so a wrong count fails instead of
		// blocking Collect.
		ch := make(chan prometheus.Metric, 2*numMetrics)
		c.Collect(ch)
		close(ch)
		n := 0
		for m := range ch {
			n++
			if err := m.Write(new(dto.Metric)); err == nil {
				t.Errorf("%s: metric %v wrote without error", name, m.Desc())
			}
		}
		if n != numMetrics {
			t.Errorf("%s: Collect sent %d metrics, want %d", name, n, numMetrics)
		}
	}
}

// After Close the gauges read zero, but for those describing the process,
// the build, the key and the longest pauses, and the counters keep their
// values.
func TestCollectorAfterClose(t *testing.T) {
	t.Parallel()
	s, _ := busyShuffler(t)
	c := memshuffleprom.NewCollector(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	const want = `
# HELP memshuffle_entries Live entries, rented or not.
# TYPE memshuffle_entries gauge
memshuffle_entries 0
# HELP memshuffle_mapped_bytes Bytes of arenas mapped from the operating system, guard pages not counted.
# TYPE memshuffle_mapped_bytes gauge
memshuffle_mapped_bytes 0
# HELP memshuffle_shuffles_total Completed calls to Shuffle.
# TYPE memshuffle_shuffles_total counter
memshuffle_shuffles_total 1
# HELP memshuffle_key_rotations_total Completed key rotations, by RotateKey or WithKeyRotation.
# TYPE memshuffle_key_rotations_total counter
memshuffle_key_rotations_total 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"memshuffle_entries", "memshuffle_mapped_bytes", "memshuffle_shuffles_total",
		"memshuffle_key_rotations_total"); err != nil {
		t.Error(err)
	}
}

// The metrics come out of promhttp in the text format, over a loopback
// listener.
func TestCollectorHTTP(t *testing.T) {
	t.Parallel()
	s, _ := busyShuffler(t)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(memshuffleprom.NewCollector(s, memshuffleprom.WithConstLabels(prometheus.Labels{"shuffler": "sessions"})))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no IPv4 loopback: %v", err)
	}
	srv := &httptest.Server{
		Listener: ln,
		Config:   &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError})},
	}
	srv.Start()
	t.Cleanup(srv.Close)

	req, err := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s: %s", resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type = %q, want the text format", ct)
	}
	text := string(body)
	for _, line := range []string{
		"# TYPE memshuffle_entries gauge",
		`memshuffle_entries{shuffler="sessions"} 4`,
		`memshuffle_live_bytes{shuffler="sessions"} 104`,
		"# TYPE memshuffle_shuffles_total counter",
		`memshuffle_shuffles_total{shuffler="sessions"} 1`,
		`memshuffle_key_rotations_total{shuffler="sessions"} 1`,
		"# TYPE memshuffle_shuffle_seconds_total counter",
	} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("response lacks %q", line)
		}
	}

	// Every sample is a metric of ours with only the label we set: nothing
	// else, such as a handle or an address, can be in the output.
	samples := 0
	for line := range strings.Lines(text) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		samples++
		name, rest, ok := strings.Cut(line, `{shuffler="sessions"} `)
		if !ok || !strings.HasPrefix(name, "memshuffle_") || strings.ContainsAny(rest, "{}\"") {
			t.Errorf("unexpected sample line %q", line)
		}
	}
	if samples != numMetrics {
		t.Errorf("%d samples, want %d", samples, numMetrics)
	}
}
