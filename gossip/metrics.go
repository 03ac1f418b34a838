package gossip

import "github.com/prometheus/client_golang/prometheus"

// Collector exports a mesh's counters (Stats) as Prometheus metrics, read
// at scrape time. countd registers it beside the node's metrics; its
// names are listed in docs/operations.md.
type Collector struct {
	m *Mesh

	bytes, aeExchanges, aeFailures, aeDeltas, streamDeltas *prometheus.Desc
	drops, applyErrors, refused, reconnects                *prometheus.Desc
	inbound, inboundMax                                    *prometheus.Desc
}

// NewCollector returns the collector of m.
func NewCollector(m *Mesh) *Collector {
	return &Collector{
		m: m,
		bytes: prometheus.NewDesc("countmesh_peer_bytes_total",
			"Bytes this node sent to and received from its peers on the peer transport (framing included; memberlist's own traffic is not counted), by traffic: anti_entropy (its sessions) or other (streams, peer calls, probes).",
			[]string{"direction", "traffic"}, nil),
		aeExchanges: prometheus.NewDesc("countmesh_anti_entropy_exchanges_total",
			"Anti-entropy exchanges completed, by this node's role: initiator (it started them) or responder.", []string{"role"}, nil),
		aeFailures: prometheus.NewDesc("countmesh_anti_entropy_failures_total",
			"Anti-entropy exchanges that failed, either role: a peer unreachable or busy, a timeout, or data this node refused.", nil, nil),
		aeDeltas: prometheus.NewDesc("countmesh_anti_entropy_deltas_total",
			"Changes moved by anti-entropy, by direction: what the streams did not deliver.", []string{"direction"}, nil),
		streamDeltas: prometheus.NewDesc("countmesh_stream_deltas_total",
			"Changes sent and received on replication streams (after coalescing), by direction.", []string{"direction"}, nil),
		drops: prometheus.NewDesc("countmesh_stream_dropped_deltas_total",
			"Changes not queued for a peer because its queue was full; anti-entropy repairs them.", nil, nil),
		applyErrors: prometheus.NewDesc("countmesh_peer_apply_errors_total",
			"Batches from peers (streams and anti-entropy) that this node refused to apply.", nil, nil),
		refused: prometheus.NewDesc("countmesh_peer_connections_refused_total",
			"Inbound peer connections refused: limit (the listener held the most it may; see countmesh_peer_inbound_connections) or handshake (no valid certificate, a name that is not a member, a bad hello).",
			[]string{"reason"}, nil),
		reconnects: prometheus.NewDesc("countmesh_peer_reconnects_total",
			"Background joins that reached a failed member or a join address.", nil, nil),
		inbound: prometheus.NewDesc("countmesh_peer_inbound_connections",
			"Connections the peer listener holds now.", nil, nil),
		inboundMax: prometheus.NewDesc("countmesh_peer_inbound_connections_max",
			"The most connections the peer listener holds; more are closed as they arrive.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.bytes, c.aeExchanges, c.aeFailures, c.aeDeltas, c.streamDeltas,
		c.drops, c.applyErrors, c.refused, c.reconnects, c.inbound, c.inboundMax} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	// The totals are read before their anti-entropy parts, which may have
	// grown since.
	other := func(total, ae uint64) uint64 { return total - min(ae, total) }
	counter(c.bytes, other(s.BytesSent, s.AntiEntropyBytesSent), "sent", "other")
	counter(c.bytes, s.AntiEntropyBytesSent, "sent", "anti_entropy")
	counter(c.bytes, other(s.BytesReceived, s.AntiEntropyBytesReceived), "received", "other")
	counter(c.bytes, s.AntiEntropyBytesReceived, "received", "anti_entropy")
	counter(c.aeExchanges, s.AntiEntropyRounds, "initiator")
	counter(c.aeExchanges, s.AntiEntropyServed, "responder")
	counter(c.aeFailures, s.AntiEntropyFailures)
	counter(c.aeDeltas, s.AntiEntropyDeltasSent, "sent")
	counter(c.aeDeltas, s.AntiEntropyDeltasReceived, "received")
	counter(c.streamDeltas, s.DeltasStreamed, "sent")
	counter(c.streamDeltas, s.DeltasReceived, "received")
	counter(c.drops, s.DroppedDeltas)
	counter(c.applyErrors, s.ApplyErrors)
	counter(c.refused, s.RefusedConns, "limit")
	counter(c.refused, s.RefusedPeers, "handshake")
	counter(c.reconnects, s.Reconnects)
	ch <- prometheus.MustNewConstMetric(c.inbound, prometheus.GaugeValue, float64(s.InboundConns))
	ch <- prometheus.MustNewConstMetric(c.inboundMax, prometheus.GaugeValue, float64(s.MaxInboundConns))
}
