package memshuffleprom

import (
	"maps"

	"github.com/prometheus/client_golang/prometheus"
)

// Option configures a collector made by NewCollector.
type Option interface {
	apply(*config)
}

type config struct {
	namespace   string
	constLabels prometheus.Labels
}

func defaultConfig() config {
	return config{namespace: "memshuffle"}
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithNamespace sets the prefix of every metric name; the default is
// "memshuffle", which gives names such as memshuffle_entries. An empty
// namespace leaves the names unprefixed. It must make names valid in
// Prometheus's classic format (see NewCollector).
func WithNamespace(namespace string) Option {
	return optionFunc(func(c *config) { c.namespace = namespace })
}

// WithConstLabels adds labels with fixed values to every metric, such as
// {"shuffler": "sessions"} to tell apart the collectors of several
// Shufflers registered on one registry, which then must all use the same
// label names. The map is copied; later changes to it have no effect.
// Several calls add up, a later value replacing an earlier one of the same
// label. Never put a secret in a label value: it is served as it is.
func WithConstLabels(labels prometheus.Labels) Option {
	labels = maps.Clone(labels)
	return optionFunc(func(c *config) {
		if c.constLabels == nil {
			c.constLabels = prometheus.Labels{}
		}
		maps.Copy(c.constLabels, labels)
	})
}
