package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/countmesh/countmesh/store"
)

// Metrics are the node's Prometheus metrics, which its subsystems count
// through function values built in node.Open.
type Metrics struct {
	Increments  prometheus.Counter
	Batches     prometheus.Counter
	Reads       prometheus.Counter
	ReadThrough prometheus.Counter
	Evictions   prometheus.Counter
	Shed        prometheus.Counter
	PeerRefused prometheus.Counter // peer inputs refused as invalid (package node/replica)
	Released    prometheus.Counter // copies of sharded counters dropped once their owners held them
	Restored    prometheus.Counter // released counters brought back from an owner before a write

	Replicated        prometheus.Counter
	Checkpoints       prometheus.Counter
	CheckpointSeconds prometheus.Histogram

	RightsGiven    prometheus.Counter
	RightsReceived prometheus.Counter
	Duplicates     prometheus.Counter
	Compensations  prometheus.Counter
	ExpiredIDs     prometheus.Counter
	BucketDrops    prometheus.Counter
	Expired        prometheus.Counter
	Watchers       prometheus.Gauge
	Folded         prometheus.Counter // counters whose forgotten nodes' slots this node folded
}

// Sources are the node's state that gauges read when scraped.
type Sources struct {
	Pending   func() int64                // changed counters waiting for the group committer
	Unsaved   func() int64                // counters logged but not yet checkpointed
	LogBytes  func() int64                // operation-log bytes since the last checkpoint
	Cached    func() int                  // counters held in memory
	Packed    func() int                  // of them, those packed (not entries)
	Commits   func() store.CommitterStats // the group committer's counts
	DiskBytes func() uint64               // bytes the store uses on disk
	// RetiredIDs is the number of slot ids of the retired list's stable
	// entries, FoldGen the generation this node folds to (equal once it has
	// caught up with every forget).
	RetiredIDs func() int
	FoldGen    func() uint64
}

// New returns the metrics, registered with reg when it is not nil.
func New(reg prometheus.Registerer, src Sources) *Metrics {
	m := &Metrics{
		Increments: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_increments_total", Help: "Increments and decrements applied by this node (single and batched).",
		}),
		Batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_batches_total", Help: "Batches applied by this node.",
		}),
		Reads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_reads_total", Help: "Counter reads served.",
		}),
		ReadThrough: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_cache_misses_total", Help: "Counters read through from the store because they were not in memory.",
		}),
		Evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_cache_evictions_total", Help: "Counters evicted from memory (their state is durable in the store).",
		}),
		Shed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_shed_total", Help: "Writes refused with 429 because too many changes waited for the disk.",
		}),
		PeerRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_peer_input_refused_total", Help: "Batches, states and rights messages from peers refused as malformed or out of bounds.",
		}),
		Released: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_released_counters_total", Help: "Copies of counters of sharded namespaces this node wrote but does not own, dropped once every owner held their changes.",
		}),
		Restored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_restored_counters_total", Help: "Released counters brought back from an owner before this node wrote them again.",
		}),
		Replicated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_replicated_changes_total", Help: "Counter changes merged from peers.",
		}),
		Checkpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_checkpoints_total", Help: "Checkpoints of changed counters from the operation log into Pebble.",
		}),
		CheckpointSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "countmesh_checkpoint_duration_seconds", Help: "Time a checkpoint takes.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		RightsGiven: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_bound_rights_given_total", Help: "Rights on bounded counters this node gave to peers.",
		}),
		RightsReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_bound_rights_received_total", Help: "Rights on bounded counters this node received from peers.",
		}),
		Duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_duplicate_increments_total", Help: "Increments answered as duplicates of an id seen before.",
		}),
		Compensations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_id_compensations_total", Help: "Increments this node took back because another node had applied the same id first.",
		}),
		ExpiredIDs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_expired_ids_total", Help: "Id records deleted past their namespace's idempotency window.",
		}),
		BucketDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_bucket_range_drops_total", Help: "Range deletes of time buckets past their retention.",
		}),
		Expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countmesh_expired_counters_total", Help: "Counters deleted because they were idle past their namespace's ttl.",
		}),
		Watchers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "countmesh_watch_subscriptions", Help: "Open watch subscriptions.",
		}),
	}
	m.Folded = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "countmesh_retired_folds_total", Help: "Counters whose forgotten nodes' slots this node folded into the retired slot (countctl cluster forget).",
	})
	if reg == nil {
		return m
	}
	reg.MustRegister(m.BucketDrops, m.Expired, m.Watchers, m.Duplicates, m.Compensations, m.ExpiredIDs, m.RightsGiven, m.RightsReceived)
	reg.MustRegister(m.Increments, m.Batches, m.Reads, m.ReadThrough, m.Evictions, m.Shed, m.PeerRefused, m.Released, m.Restored, m.Replicated, m.Checkpoints, m.CheckpointSeconds, m.Folded)
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "countmesh_pending_changes", Help: "Changed counters waiting for the group committer.",
		}, func() float64 { return float64(src.Pending()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "countmesh_unsaved_counters", Help: "Changed counters whose state is in the operation log but not yet checkpointed to Pebble.",
		}, func() float64 { return float64(src.Unsaved()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "countmesh_oplog_bytes", Help: "Operation-log bytes since the last checkpoint (what a crash restart replays).",
		}, func() float64 { return float64(src.LogBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "countmesh_cached_counters", Help: "Counters held in memory.",
		}, func() float64 { return float64(src.Cached()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "countmesh_packed_counters", Help: "Of the counters held in memory, those packed in the compact tier (the rest are entries).",
		}, func() float64 { return float64(src.Packed()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "countmesh_commits_total", Help: "Group commits written to the store.",
		}, func() float64 { return float64(src.Commits().Commits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "countmesh_fsyncs_total", Help: "WAL fsyncs.",
		}, func() float64 { return float64(src.Commits().Fsyncs) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "countmesh_fsync_seconds_total", Help: "Time spent in commits that fsync the WAL.",
		}, func() float64 { return src.Commits().FsyncTime.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "countmesh_disk_bytes", Help: "Bytes the store uses on disk.",
		}, func() float64 { return float64(src.DiskBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "countmesh_retired_ids", Help: "Slot ids of the nodes the mesh forgot for good (the retired list's stable entries).",
		}, func() float64 { return float64(src.RetiredIDs()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "countmesh_retired_fold_generation", Help: "Of them, how many this node folds (below countmesh_retired_ids while it catches up with their last changes).",
		}, func() float64 { return float64(src.FoldGen()) }),
	)
	return m
}
