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
	// ok and failed count the commands by command.index; other counts
	// names that are not commands (their count would be unbounded).
	ok, failed []prometheus.Counter
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
		ok:     make([]prometheus.Counter, len(commandList)),
		failed: make([]prometheus.Counter, len(commandList)),
		other:  commands.WithLabelValues("other", "error"),
	}
	for i, c := range commandList {
		m.ok[i] = commands.WithLabelValues(c.name, "ok")
		m.failed[i] = commands.WithLabelValues(c.name, "error")
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

// count records n commands cmd with their result.
func (m *metrics) count(cmd *command, ok bool, n int) {
	set := m.failed
	if ok {
		set = m.ok
	}
	if n == 1 {
		set[cmd.index].Inc()
	} else {
		set[cmd.index].Add(float64(n))
	}
}
