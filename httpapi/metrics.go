package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"
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
