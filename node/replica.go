package node

import (
	"context"
	"time"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/node/replica"
	"github.com/countmesh/countmesh/store"
)

// Publisher takes the node's own durable changes for replication (a
// gossip.Mesh). Publish must not block.
type Publisher = replica.Publisher

// newReplica wires the replica side (package node/replica: what gossip
// streams to, the committer's source, the version vector and the checks of
// peer input) to the node.
func newReplica(n *Node) *replica.Replica {
	cfg := n.cfg
	return replica.New(replica.Config{
		ID:                n.id,
		Log:               n.log,
		Store:             n.store,
		Keys:              n.keys,
		Clock:             n.clock,
		Now:               cfg.Now,
		MaxClockOffset:    cfg.MaxClockOffset,
		MaxBy:             MaxBy,
		CheckpointUnsaved: checkpointUnsaved(cfg.CacheCounters),
		Checkpoint: store.CheckpointConfig{
			Interval: cfg.CheckpointInterval,
			LogBytes: cfg.CheckpointLogBytes,
			Logger:   cfg.Logger,
			Observe: func(_ int64, took time.Duration) {
				n.metrics.Checkpoints.Inc()
				n.metrics.CheckpointSeconds.Observe(took.Seconds())
			},
		},
		Members: func() []crdt.NodeID {
			if cfg.Peers == nil {
				return nil
			}
			peers := cfg.Peers.Peers()
			ids := make([]crdt.NodeID, len(peers))
			for i, p := range peers {
				ids[i] = p.ID
				if p.ID == 0 {
					ids[i] = crdt.NodeIDFromName(p.Name)
				}
			}
			return ids
		},
		Ready:          n.ready.Load,
		Replicas:       n.ReplicasOf,
		ValidNamespace: ValidateNamespace,
		ValidKey:       validReplicatedKey,
		Namespace: func(ns, key string, c *crdt.Counter) (sync, drop bool, err error) {
			rec, err := n.ns.ForWrite(ns)
			if err != nil {
				return false, false, err
			}
			return rec.Config.Durability == DurabilitySync, rec.Dropped(key, c, cfg.Now(), n.ids), nil
		},
		Namespaces: n.ns,
		Durable:    n.durable,
		Ctx:        n.baseCtx,
		Changed:    n.feed.changedLocked,
		Compensate: func(s *keyspace.Stripe, ns, key string, e *keyspace.Entry) {
			n.ids.CompensateLocked(s, ns, key, e)
		},
		Received:     n.recent.add,
		Saved:        n.recent.rotate,
		OnRefused:    func() { n.metrics.PeerRefused.Inc() },
		OnReplicated: func(k int) { n.metrics.Replicated.Add(float64(k)) },
		Retired:      n.retired,
		FoldLocked: func(ns, key string, c *crdt.Counter) {
			n.foldLocked(ns, key, c)
		},
		RetiredBehind: func() { n.folds.behind.Store(true) },
	})
}

// Replica returns the replica side of the node (package node/replica): what
// gossip streams to (gossip.Replica) and what the committer drains
// (store.Source).
func (n *Node) Replica() *replica.Replica { return n.rep }

// SetPublisher attaches the replication layer; nil detaches it. Changes
// committed before it is attached are sent by anti-entropy.
func (n *Node) SetPublisher(p Publisher) { n.rep.SetPublisher(p) }

// Flush waits until every change made so far is committed (and so handed
// to the publisher).
func (n *Node) Flush(ctx context.Context) error {
	return n.ackError(n.committer.Ticket(true).Wait(ctx))
}

// ID returns the node's slot id.
func (n *Node) ID() crdt.NodeID { return n.id }

// Checkpoint makes Pebble reflect every change made before the call
// (anti-entropy scans Pebble's index). It is safe for concurrent use.
func (n *Node) Checkpoint() error {
	if err := n.ckpt.Checkpoint(); err != nil {
		return kinderr.New(ErrUnavailable, err, "checkpoint: %v", err)
	}
	return nil
}
