package node

import (
	"context"
	"errors"
	"time"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/node/exact"
)

// Bounds (min and max) of exact namespaces are kept by per-node rights
// (package node/exact, exact.Rights); this file wires them to the node and
// answers the peers' rights requests. Bounds need 0 within [min, max] (the
// counter starts at 0), and an exact namespace with bounds refuses resets
// and deletes (they would move the value outside the rights' accounting).

// RightsRequest asks a peer for rights on a counter.
type RightsRequest = exact.RightsRequest

// RightsGrant is a peer's answer: how many rights it gave, and its record of
// gifts to the asker, to merge.
type RightsGrant = exact.RightsGrant

// RightsTransport asks peers for rights (package peerrpc implements it).
type RightsTransport = exact.RightsTransport

// newBoundsRights wires the rights of bounded exact counters (package
// node/exact) to the node.
func newBoundsRights(n *Node) *exact.Rights {
	return exact.NewRights(exact.RightsConfig{
		Name:      n.cfg.Name,
		Region:    n.cfg.Region,
		ID:        n.id,
		Keys:      n.keys,
		Now:       n.cfg.Now,
		Log:       n.log,
		Peers:     n.cfg.Peers,
		Transport: n.cfg.Rights,
		Timeout:   func() time.Duration { return n.quorum.Timeout() },
		MaxBy:     MaxBy,
		Known:     func(id crdt.NodeID) bool { return n.rep.Known(id) },
		Check:     func(ns, key string, c *crdt.Counter) error { return n.rep.CheckState(ns, key, c) },
		CheckLocal: func(ns, key string, local, c *crdt.Counter) error {
			return n.rep.CheckAgainstLocalLocked(ns, key, local, c)
		},
		OnRefused:  func() { n.metrics.PeerRefused.Inc() },
		OnReceived: func(got int64) { n.metrics.RightsReceived.Add(float64(got)) },
	})
}

// GrantRights answers a peer's RightsRequest: this node gives half of the
// rights it holds on the counter (at least what was asked, if it holds that
// many), durably, and returns its record of gifts to the asker.
func (n *Node) GrantRights(ctx context.Context, req RightsRequest) (RightsGrant, error) {
	err := validateName(req.NS, req.Key)
	if err == nil {
		err = n.rights.CheckRequest(req)
	}
	if err != nil {
		if errors.Is(err, ErrInvalidPeerData) {
			n.metrics.PeerRefused.Inc()
		}
		return RightsGrant{}, err
	}
	if err := n.checkWritable(1); err != nil {
		return RightsGrant{}, err
	}
	rec := n.ns.Get(req.NS)
	if rec == nil || !rec.Bounds().Any() || !rec.Bounds().Exact {
		return RightsGrant{}, nil // nothing to give (yet)
	}
	out, err := n.rights.Grant(rec.Bounds(), req)
	if err != nil || out.Amount == 0 {
		return RightsGrant{}, err
	}
	// Durable before the asker may spend it: a crash must not let this
	// node give the same rights twice.
	if err := n.durable(ctx, true); err != nil {
		return RightsGrant{}, err
	}
	n.metrics.RightsGiven.Add(float64(out.Amount))
	return out, nil
}
