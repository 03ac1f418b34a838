package node

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/exact"
)

// Consistency levels of a read or a write (docs/api.md, "Consistency").
const (
	ConsistencyLocal  = exact.ConsistencyLocal
	ConsistencyQuorum = exact.ConsistencyQuorum
	ConsistencyAll    = exact.ConsistencyAll
)

// DefaultQuorumTimeout bounds a quorum or all operation when
// Config.QuorumTimeout is zero.
const DefaultQuorumTimeout = exact.DefaultQuorumTimeout

// Peer is another node of the mesh as the consistency levels see it.
type Peer = exact.Peer

// Peers lists the other members of the mesh (see exact.Peers).
type Peers = exact.Peers

// CounterState is one counter's full CRDT state, as peers exchange it for
// the quorum and all levels (see exact.CounterState).
type CounterState = exact.CounterState

// PeerTransport is the peer RPC of the quorum and all levels (see
// exact.PeerTransport).
type PeerTransport = exact.PeerTransport

// newQuorum wires the quorum and all levels (package node/exact) to the
// node.
func newQuorum(n *Node) *exact.Quorum {
	return exact.NewQuorum(exact.Config{
		Name:      n.cfg.Name,
		Region:    n.cfg.Region,
		ID:        n.id,
		Peers:     n.cfg.Peers,
		Transport: n.cfg.PeerTransport,
		Timeout:   n.cfg.QuorumTimeout,
		Log:       n.log,
		Flush:     n.Flush,
		OwnChange: func(ns, key string) (crdt.Counter, uint64, error) { return n.rep.OwnChange(ns, key) },
		State: func(ns, key string) (crdt.Counter, error) {
			c, _, err := n.rep.CounterState(ns, key)
			return c, err
		},
		Check:         func(ns, key string, c *crdt.Counter) error { return n.rep.CheckState(ns, key, c) },
		OnRefused:     func() { n.metrics.PeerRefused.Inc() },
		Merge:         func(states []CounterState) error { return n.rep.ApplyDurable(statesBatch(n.id, states)) },
		CheckReadable: func() error { return readable(n.ready.Load()) },
		Retired:       func() []crdt.NodeID { return n.retired.IDs() },
	})
}

// PeerState answers a peer's quorum read: the state of ns/key as this node
// holds it durably (the zero Counter when it never saw the counter). A
// node that is not ready refuses with ErrUnavailable: it may have lost what
// it acknowledged before a disk loss, and must not count in a quorum.
func (n *Node) PeerState(ctx context.Context, ns, key string) (crdt.Counter, error) {
	if err := ValidateNamespace(ns); err != nil {
		return crdt.Counter{}, err
	}
	if err := validReplicatedKey(key); err != nil {
		return crdt.Counter{}, fmt.Errorf("%w: bad key %q", ErrInvalidArgument, key)
	}
	if !n.Ready() {
		return crdt.Counter{}, fmt.Errorf("%w: the node is not ready", ErrUnavailable)
	}
	if err := n.refuseReleased(ns, key); err != nil {
		return crdt.Counter{}, err
	}
	c, _, err := n.rep.CounterState(ns, key)
	if err != nil {
		return crdt.Counter{}, kinderr.New(ErrUnavailable, err, "read counter: %v", err)
	}
	// Only what is durable leaves the node: the state read above is
	// covered by a commit that starts after the read.
	if err := n.Flush(ctx); err != nil {
		return crdt.Counter{}, err
	}
	return c, nil
}

// PeerStates answers a peer's read of many counters (reads of sharded
// namespaces at a node that does not own them): PeerState for each, with
// one flush.
func (n *Node) PeerStates(ctx context.Context, keys []KeyRef) ([]crdt.Counter, error) {
	if len(keys) > MaxGetMany {
		return nil, fmt.Errorf("%w: %d keys in one fetch, more than %d", ErrInvalidArgument, len(keys), MaxGetMany)
	}
	for _, k := range keys {
		if err := ValidateNamespace(k.NS); err != nil {
			return nil, err
		}
		if err := validReplicatedKey(k.Key); err != nil {
			return nil, fmt.Errorf("%w: bad key %q", ErrInvalidArgument, k.Key)
		}
	}
	if !n.Ready() {
		return nil, fmt.Errorf("%w: the node is not ready", ErrUnavailable)
	}
	for _, k := range keys {
		if err := n.refuseReleased(k.NS, k.Key); err != nil {
			return nil, err
		}
	}
	out := make([]crdt.Counter, len(keys))
	for i, k := range keys {
		c, _, err := n.rep.CounterState(k.NS, k.Key)
		if err != nil {
			return nil, kinderr.New(ErrUnavailable, err, "read counter: %v", err)
		}
		out[i] = c
	}
	if err := n.Flush(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// MergeStates answers a peer's quorum write: it merges the states into this
// node's counters and returns once they are durable. States that are
// malformed or out of bounds (package node/replica's peerinput.go) are refused, all of them, with
// an error wrapping ErrInvalidPeerData, and nothing is merged.
func (n *Node) MergeStates(ctx context.Context, states []CounterState) error {
	if len(states) > MaxBatchOps {
		n.metrics.PeerRefused.Inc()
		return fmt.Errorf("%w: %d states in one merge, more than %d", ErrInvalidPeerData, len(states), MaxBatchOps)
	}
	for _, s := range states {
		if err := ValidateNamespace(s.NS); err != nil {
			return err
		}
		if err := validReplicatedKey(s.Key); err != nil {
			return fmt.Errorf("%w: bad key %q", ErrInvalidArgument, s.Key)
		}
	}
	if err := ctx.Err(); err != nil {
		return kinderr.New(ErrUnavailable, err, "%v", err)
	}
	return n.rep.ApplyDurable(statesBatch(n.id, states))
}

// statesBatch is the batch that merges full counter states (a quorum
// write's) through the replica's ApplyDurable, which waits until they are
// durable. The deltas carry this node as origin and no sequence:
// they advance no version vector, and the origins' own changes still come
// with their sequence numbers by the delta streams and anti-entropy.
//
// A state with Origin and Seq holds that origin's change Seq: it is
// recorded under it (the index anti-entropy scans), and the version vector
// moves past Seq when it already held every change before it.
func statesBatch(self crdt.NodeID, states []CounterState) change.Batch {
	b := change.Batch{Deltas: make([]change.Delta, len(states))}
	for i, s := range states {
		b.Deltas[i] = change.Delta{NS: s.NS, Key: s.Key, Origin: self, State: s.State}
		if s.Origin != 0 && s.Seq != 0 {
			b.Deltas[i].Origin, b.Deltas[i].Seq = s.Origin, s.Seq
			b.Ranges = append(b.Ranges, change.Range{Origin: s.Origin, After: s.Seq - 1, Upto: s.Seq})
		}
	}
	// Apply advances the vector range by range: in sequence order, a run
	// of consecutive changes moves it as far as it goes.
	slices.SortFunc(b.Ranges, func(x, y change.Range) int {
		return cmp.Or(cmp.Compare(x.Origin, y.Origin), cmp.Compare(x.After, y.After))
	})
	return b
}

// readable refuses a read, at any consistency, on a node that is not
// ready: one restarted with an empty disk holds whatever part of the state
// has reached it so far, and may not even know its namespaces' configs (the
// chaos campaign saw a wiped node answer -1 for a counter whose minimum is
// 0, 200 ms after it restarted).
func readable(ready bool) error {
	if !ready {
		return fmt.Errorf("%w: the node is not ready (it is catching up with its peers after a restart); retry, or read from another node", ErrUnavailable)
	}
	return nil
}
