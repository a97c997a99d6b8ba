package memshuffleprom

import (
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/memshuffle/memshuffle"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// snapshotCollector reports a fixed Stats through the collector's own
// descriptors and conversion.
type snapshotCollector struct {
	c  *collector
	st memshuffle.Stats
}

func (s snapshotCollector) Describe(ch chan<- *prometheus.Desc) { s.c.Describe(ch) }
func (s snapshotCollector) Collect(ch chan<- prometheus.Metric) { s.c.collect(&s.st, ch) }

// Every Stats field is exported exactly once, as the right type, with its
// own value: a field added to Stats fails this test until it gets a metric.
func TestEveryStatsField(t *testing.T) {
	byField := make(map[string]metric)
	for _, m := range metrics {
		if _, dup := byField[m.field]; dup {
			t.Errorf("field %s has two metrics", m.field)
		}
		byField[m.field] = m
	}

	// Give every field a distinct value: field i holds i+1 (seconds, for a
	// duration; true, for the one bool).
	var st memshuffle.Stats
	v := reflect.ValueOf(&st).Elem()
	want := make(map[string]float64)
	isCounter := make(map[string]bool)
	durationType := reflect.TypeFor[time.Duration]()
	for i := range v.NumField() {
		f, fv := v.Type().Field(i), v.Field(i)
		if _, ok := byField[f.Name]; !ok {
			t.Errorf("Stats.%s has no metric", f.Name)
			continue
		}
		n := i + 1
		switch {
		case f.Type == durationType:
			fv.SetInt(int64(n) * int64(time.Second))
		case fv.Kind() == reflect.Int || fv.Kind() == reflect.Int64:
			fv.SetInt(int64(n))
		case fv.Kind() == reflect.Uint64:
			fv.SetUint(uint64(n))
			isCounter[f.Name] = true
		case fv.Kind() == reflect.Bool:
			fv.SetBool(true)
			n = 1
		default:
			t.Fatalf("Stats.%s has type %s, which the test does not know", f.Name, f.Type)
		}
		want[f.Name] = float64(n)
	}
	isCounter["ShuffleTime"] = true // a duration that only grows
	for _, m := range metrics {
		if _, ok := want[m.field]; !ok {
			t.Errorf("metric %s reports Stats.%s, which does not exist", m.name, m.field)
		}
	}

	// The expected exposition, built from the table.
	var text strings.Builder
	names := make([]string, 0, len(metrics))
	for _, m := range metrics {
		name := "memshuffle_" + m.name
		names = append(names, name)
		typ := "gauge"
		if m.typ == prometheus.CounterValue {
			typ = "counter"
		}
		if isCounter[m.field] != (m.typ == prometheus.CounterValue) {
			t.Errorf("%s is a %s, but Stats.%s is %s", name, typ, m.field,
				map[bool]string{true: "a counter", false: "a gauge"}[isCounter[m.field]])
		}
		if strings.HasSuffix(m.name, "_total") != (m.typ == prometheus.CounterValue) {
			t.Errorf("%s: only counters, and all counters, end in _total", name)
		}
		fmt.Fprintf(&text, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", name, m.help, name, typ,
			name, strconv.FormatFloat(want[m.field], 'g', -1, 64))
	}
	s, err := memshuffle.New()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := NewCollector(s).(*collector)
	if err := testutil.CollectAndCompare(snapshotCollector{c, st}, strings.NewReader(text.String()), names...); err != nil {
		t.Error(err)
	}
}

// Every metric is documented in the package doc and in README.md.
func TestMetricsDocumented(t *testing.T) {
	for file, field := range map[string]string{
		"doc.go":    "(%s)", // "... (Entries)."
		"README.md": "`%s`", // a table cell
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		doc := string(b)
		for _, m := range metrics {
			name := "memshuffle_" + m.name
			// A trailing delimiter, so memshuffle_long_rents is not found
			// inside memshuffle_long_rents_seen_total.
			if !strings.Contains(doc, name+":") && !strings.Contains(doc, name+"`") {
				t.Errorf("%s does not document %s", file, name)
			}
			if !strings.Contains(doc, fmt.Sprintf(field, m.field)) {
				t.Errorf("%s does not name Stats.%s", file, m.field)
			}
		}
	}
}
