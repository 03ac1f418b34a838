package node

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the node's Prometheus metrics.
type metrics struct {
	increments  prometheus.Counter
	batches     prometheus.Counter
	reads       prometheus.Counter
	readThrough prometheus.Counter
	evictions   prometheus.Counter
	shed        prometheus.Counter
	peerRefused prometheus.Counter // peer inputs refused as invalid (peerinput.go)

	replicated        prometheus.Counter
	checkpoints       prometheus.Counter
	checkpointSeconds prometheus.Histogram

	rightsGiven    prometheus.Counter
	rightsReceived prometheus.Counter
	duplicates     prometheus.Counter
	compensations  prometheus.Counter
	expiredIDs     prometheus.Counter
	bucketDrops    prometheus.Counter
	expired        prometheus.Counter
	watchers       prometheus.Gauge
}

func newMetrics(n *Node, reg prometheus.Registerer) *metrics {
	m := &metrics{
		increments: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_increments_total", Help: "Increments and decrements applied by this node (single and batched).",
		}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_batches_total", Help: "Batches applied by this node.",
		}),
		reads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_reads_total", Help: "Counter reads served.",
		}),
		readThrough: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_cache_misses_total", Help: "Counters read through from the store because they were not in memory.",
		}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_cache_evictions_total", Help: "Counters evicted from memory (their state is durable in the store).",
		}),
		shed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_shed_total", Help: "Writes refused with 429 because too many changes waited for the disk.",
		}),
		peerRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_peer_input_refused_total", Help: "Batches, states and rights messages from peers refused as malformed or out of bounds.",
		}),
		replicated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_replicated_changes_total", Help: "Counter changes merged from peers.",
		}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_checkpoints_total", Help: "Checkpoints of changed counters from the operation log into Pebble.",
		}),
		checkpointSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "countmesh_checkpoint_duration_seconds", Help: "Time a checkpoint takes.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		rightsGiven: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_bound_rights_given_total", Help: "Rights on bounded counters this node gave to peers.",
		}),
		rightsReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_bound_rights_received_total", Help: "Rights on bounded counters this node received from peers.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_duplicate_increments_total", Help: "Increments answered as duplicates of an id seen before.",
		}),
		compensations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_id_compensations_total", Help: "Increments this node took back because another node had applied the same id first.",
		}),
		expiredIDs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_expired_ids_total", Help: "Id records deleted past their namespace's idempotency window.",
		}),
		bucketDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_bucket_range_drops_total", Help: "Range deletes of time buckets past their retention.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_expired_counters_total", Help: "Counters deleted because they were idle past their namespace's ttl.",
		}),
		watchers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "countmesh_watch_subscriptions", Help: "Open watch subscriptions.",
		}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.bucketDrops, m.expired, m.watchers, m.duplicates, m.compensations, m.expiredIDs, m.rightsGiven, m.rightsReceived)
	reg.MustRegister(m.increments, m.batches, m.reads, m.readThrough, m.evictions, m.shed, m.peerRefused, m.replicated, m.checkpoints, m.checkpointSeconds)
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "countmesh_pending_changes", Help: "Changed counters waiting for the group committer.",
		}, func() float64 { return float64(n.keys.Pending()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "countmesh_unsaved_counters", Help: "Changed counters whose state is in the operation log but not yet checkpointed to Pebble.",
		}, func() float64 { return float64(n.keys.UnsavedCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "countmesh_oplog_bytes", Help: "Operation-log bytes since the last checkpoint (what a crash restart replays).",
		}, func() float64 { return float64(n.store.LogBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "countmesh_cached_counters", Help: "Counters held in memory.",
		}, func() float64 { return float64(n.keys.Count("")) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "countmesh_commits_total", Help: "Group commits written to the store.",
		}, func() float64 { return float64(n.committer.Stats().Commits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "countmesh_fsyncs_total", Help: "WAL fsyncs.",
		}, func() float64 { return float64(n.committer.Stats().Fsyncs) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "countmesh_fsync_seconds_total", Help: "Time spent in commits that fsync the WAL.",
		}, func() float64 { return n.committer.Stats().FsyncTime.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "countmesh_disk_bytes", Help: "Bytes the store uses on disk.",
		}, func() float64 { return float64(n.store.DiskUsage()) }),
	)
	return m
}
