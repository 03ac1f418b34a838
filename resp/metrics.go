package resp

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the listener's Prometheus metrics.
type metrics struct {
	conns    prometheus.Gauge
	refused  prometheus.Counter
	pipeline prometheus.Histogram
	// ok and failed count the commands by name; other counts names that
	// are not commands (their count would be unbounded).
	ok, failed map[string]prometheus.Counter
	other      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	commands := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "countmesh_resp_commands_total",
		Help: "Redis protocol commands handled, by command and result (ok or error).",
	}, []string{"command", "result"})
	m := &metrics{
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "countmesh_resp_connections", Help: "Redis protocol connections open.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_resp_connections_refused_total", Help: "Redis protocol connections refused at the connection limit.",
		}),
		pipeline: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "countmesh_resp_pipeline_duration_seconds",
			Help:    "Time to handle one read of Redis protocol commands (a pipeline), writes' durability included.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 17), // 50µs .. 3.3s
		}),
		ok:     map[string]prometheus.Counter{},
		failed: map[string]prometheus.Counter{},
		other:  commands.WithLabelValues("other", "error"),
	}
	for name := range commandTable {
		m.ok[name] = commands.WithLabelValues(name, "ok")
		m.failed[name] = commands.WithLabelValues(name, "error")
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{commands, m.conns, m.refused, m.pipeline} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("resp: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// count records one command named name (lower case) with its result.
func (m *metrics) count(name string, ok bool) {
	set := m.failed
	if ok {
		set = m.ok
	}
	if c := set[name]; c != nil {
		c.Inc()
		return
	}
	m.other.Inc()
}
