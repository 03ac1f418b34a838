package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/countmesh/countmesh/ratelimit"
)

// meshCollector exports what /readyz and /v1/cluster show, so that alerts
// and dashboards (deploy/) can watch them: readiness, the members by state
// and the replication lag towards each peer. It reads them at scrape time.
type meshCollector struct {
	s       *Server
	ready   *prometheus.Desc
	members *prometheus.Desc
	lag     *prometheus.Desc
}

func newMeshCollector(s *Server) *meshCollector {
	return &meshCollector{
		s: s,
		ready: prometheus.NewDesc("countmesh_ready",
			"1 when the node is ready (GET /readyz answers 200), else 0.", nil, nil),
		members: prometheus.NewDesc("countmesh_members",
			"Members of the mesh as this node sees them (itself included), by state: alive, suspect, dead, left.", []string{"state"}, nil),
		lag: prometheus.NewDesc("countmesh_replication_lag_seconds",
			"Replication lag towards a peer: the age of the oldest change not yet acknowledged by it, or the last publish-to-ack time, whichever is larger.", []string{"peer", "region"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *meshCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.ready
	ch <- c.members
	ch <- c.lag
}

// Collect implements prometheus.Collector.
func (c *meshCollector) Collect(ch chan<- prometheus.Metric) {
	ready := 0.0
	if c.s.node.Ready() {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, ready)
	// Every state is exported, 0 included, so that an alert on "not
	// alive" has a series to compare.
	byState := map[string]float64{"alive": 0, "suspect": 0, "dead": 0, "left": 0}
	if c.s.cluster == nil {
		byState["alive"] = 1 // a node without the mesh is its only member
	} else {
		st := c.s.cluster.Status()
		for _, m := range st.Members {
			byState[m.State]++
		}
		for _, p := range st.Replication {
			ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(p.LagMS)/1000, p.Peer, p.Region)
		}
	}
	for state, n := range byState {
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, n, state)
	}
}

// rateLimitCollector exports the rate limiter's counts (ratelimit.Stats) at
// scrape time. Decisions by source tell an operator when the mesh's
// guarantee weakened: a "share" decision was taken on this node's share of
// a limit because the limit's owner could not be reached (or disagreed on
// who owns it), and that is when the mesh may admit more than the limit
// (docs/ratelimit.md, "The over-admission bound").
type rateLimitCollector struct {
	l                      *ratelimit.Limiter
	decisions, calls, errs *prometheus.Desc
	returns, active        *prometheus.Desc
}

func newRateLimitCollector(l *ratelimit.Limiter) *rateLimitCollector {
	return &rateLimitCollector{
		l: l,
		decisions: prometheus.NewDesc("countmesh_ratelimit_decisions_total",
			"Rate-limit decisions made on this node, by source: owner (this node owns the limit), lease (from units the owner granted), share (the owner could not be reached; decided on this node's share of the limit).", []string{"source"}, nil),
		calls: prometheus.NewDesc("countmesh_ratelimit_lease_calls_total",
			"Lease calls this node made to the owners of limits.", nil, nil),
		errs: prometheus.NewDesc("countmesh_ratelimit_lease_errors_total",
			"Lease calls that failed (unreachable, timed out, or the node called does not own the limit in its view).", nil, nil),
		returns: prometheus.NewDesc("countmesh_ratelimit_lease_returns_total",
			"Lease returns this node applied as an owner (each gives back the unused units of one lease).", nil, nil),
		active: prometheus.NewDesc("countmesh_ratelimit_active_limits",
			"Limits this node holds state for.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *rateLimitCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.decisions, c.calls, c.errs, c.returns, c.active} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *rateLimitCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.l.Stats()
	ch <- prometheus.MustNewConstMetric(c.decisions, prometheus.CounterValue, float64(st.Owner), "owner")
	ch <- prometheus.MustNewConstMetric(c.decisions, prometheus.CounterValue, float64(st.Lease), "lease")
	ch <- prometheus.MustNewConstMetric(c.decisions, prometheus.CounterValue, float64(st.Fallback), "share")
	ch <- prometheus.MustNewConstMetric(c.calls, prometheus.CounterValue, float64(st.LeaseCalls))
	ch <- prometheus.MustNewConstMetric(c.errs, prometheus.CounterValue, float64(st.LeaseErrors))
	ch <- prometheus.MustNewConstMetric(c.returns, prometheus.CounterValue, float64(st.Returns))
	ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(st.Keys))
}
