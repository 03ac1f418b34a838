package node

import (
	"github.com/countmesh/countmesh/node/approx"
	"github.com/countmesh/countmesh/node/keyspace"
)

// Approximate namespaces: the sketches and what they refuse live in
// package node/approx; the node routes the operations on a namespace the
// table (node/nsconfig) says is approximate there.

// newSketches wires the approximate namespaces' sketches (package
// node/approx) to the hot set.
func newSketches(n *Node) *approx.Sketches {
	return approx.New(approx.Config{
		ID: n.id,
		Update: func(ns, key string, fn func(e *keyspace.Entry) error) (bool, error) {
			return n.update(ns, key, true, fn)
		},
		CheckWritable: n.checkWritable,
		Read: func(ns, key string) (int64, error) {
			v, _, err := n.readValue(ns, key)
			return v, err
		},
		Durable:     n.durable,
		OnIncrement: func() { n.metrics.Increments.Inc() },
		OnRead:      func() { n.metrics.Reads.Inc() },
	})
}

// errApproxRefused is the error for an operation an approximate namespace
// cannot perform.
func errApproxRefused(ns, what string) error { return approx.Refused(ns, what) }
