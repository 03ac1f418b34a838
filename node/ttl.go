package node

import (
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/node/series"
)

// Counter TTL: a counter idle past its namespace's ttl reads 0 at once,
// and the expiry pass (package node/series, series.TTL) deletes it.

// newTTL wires the expiry of idle counters (package node/series) to the
// node.
func newTTL(n *Node) *series.TTL {
	return series.NewTTL(series.TTLConfig{
		ID:    n.id,
		Store: n.store,
		Now:   n.cfg.Now,
		Prepare: func() error {
			if err := n.checkWritable(0); err != nil {
				return err
			}
			// An expiry is a delete: it waits, as one does, for the fold
			// of the nodes the mesh forgot (checkResetAfterForget).
			if err := n.checkResetAfterForget("", "", "an expiry"); err != nil {
				return err
			}
			return n.Checkpoint()
		},
		Modify: func(ns, key string, fn func(e *keyspace.Entry) error) error {
			return n.modify(ns, key, false, fn)
		},
		Jump:      n.windows.RecordJump,
		OnExpired: func(k int) { n.metrics.Expired.Add(float64(k)) },
	})
}
