package memshuffleprom_test

import (
	"fmt"
	"log"

	"github.com/memshuffle/memshuffle"
	memshuffleprom "github.com/memshuffle/memshuffle/exporters/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// Register a Shuffler's metrics on a registry of their own. A server would
// then serve it with
//
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// or register the collector on prometheus.DefaultRegisterer instead.
func Example() {
	s, err := memshuffle.New()
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	if _, err := memshuffle.Alloc[byte](s, 32); err != nil { // a 32-byte secret
		log.Fatal(err)
	}
	if err := s.RotateKey(nil, nil); err != nil {
		log.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	c := memshuffleprom.NewCollector(s,
		memshuffleprom.WithConstLabels(prometheus.Labels{"shuffler": "sessions"}))
	if err := reg.Register(c); err != nil {
		log.Fatal(err)
	}

	// What a scrape would see, for a few of the metrics.
	families, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, mf := range families {
		switch mf.GetName() {
		case "memshuffle_entries", "memshuffle_live_bytes", "memshuffle_key_rotations_total":
			m := mf.GetMetric()[0]
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue() // one of them is nil, reading 0
			fmt.Printf("%s{%s=%q} %v\n", mf.GetName(), m.GetLabel()[0].GetName(), m.GetLabel()[0].GetValue(), v)
		}
	}
	// Output:
	// memshuffle_entries{shuffler="sessions"} 1
	// memshuffle_key_rotations_total{shuffler="sessions"} 1
	// memshuffle_live_bytes{shuffler="sessions"} 32
}
