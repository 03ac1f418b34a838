package node

import (
	"context"
	"fmt"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/approx"
	"github.com/countmesh/countmesh/node/keyspace"
)

// Approximate namespaces: the sketches live in package node/approx; the
// node decides which namespaces are approximate, validates their configs
// and refuses what a sketch cannot honour.

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
	})
}

// sketchParamsOf returns the sketch dimensions of the approximate namespace
// ns with config rec.
func sketchParamsOf(ns string, rec *namespaceRecord) (crdt.SketchParams, error) {
	p, err := rec.Config.SketchParams()
	if err != nil {
		return p, kinderr.New(ErrInvalidArgument, err, "namespace %q: %v", ns, err)
	}
	return p, nil
}

// errApproxRefused is the error for an operation an approximate namespace
// cannot perform.
func errApproxRefused(ns, what string) error { return approx.Refused(ns, what) }

// incrApprox counts by more occurrences of key in the approximate namespace
// ns and returns the key's estimate after the change. Decrements are
// refused: with negative updates a Count-Min Sketch loses its one-sided
// bound (an estimate could fall below the truth, and the ε·N bound no longer
// holds). Ids, labels and event times are refused too, since the sketch
// keeps no per-key record to honour them with, and so are the quorum
// consistency levels, not built for sketches.
func (n *Node) incrApprox(ctx context.Context, rec *namespaceRecord, ns, key string, by int64, opts WriteOptions) (Result, error) {
	switch {
	case by < 0:
		return Result{}, errApproxRefused(ns, "decrements are refused because a sketch keeps its error bound only for non-negative counts; use an eventual namespace to count down")
	case opts.ID != "":
		return Result{}, errApproxRefused(ns, "increment ids are not remembered there; send the increment without an id")
	case len(opts.Labels) > 0:
		return Result{}, errApproxRefused(ns, "it keeps no label series; send the increment without labels")
	case !opts.At.IsZero():
		return Result{}, errApproxRefused(ns, "it keeps no time buckets; send the increment without at")
	case opts.Consistency != "" && opts.Consistency != "local":
		return Result{}, errApproxRefused(ns, "only consistency local is served there (quorum over the sketch's cells is not built); leave consistency out")
	}
	p, err := sketchParamsOf(ns, rec)
	if err != nil {
		return Result{}, err
	}
	if by == 0 {
		est, _, err := n.sketches.Estimate(ns, p, key)
		return Result{Value: est}, err
	}
	est, sync, err := n.sketches.Add(ns, p, key, by)
	if err != nil {
		return Result{}, err
	}
	n.metrics.Increments.Inc()
	return Result{Value: est}, n.durable(ctx, sync)
}

// getApprox reads the estimate of key in the approximate namespace ns.
func (n *Node) getApprox(ctx context.Context, rec *namespaceRecord, ns, key string, opts ReadOptions) (Counter, error) {
	if !opts.At.IsZero() {
		return Counter{}, errApproxRefused(ns, "it keeps no history, so it cannot be read at a time; leave at out")
	}
	if opts.Consistency != "" && opts.Consistency != "local" {
		return Counter{}, errApproxRefused(ns, "only consistency local is served there (quorum over the sketch's cells is not built); leave consistency out")
	}
	p, err := sketchParamsOf(ns, rec)
	if err != nil {
		return Counter{}, err
	}
	est, bound, err := n.sketches.Estimate(ns, p, key)
	if err != nil {
		return Counter{}, err
	}
	n.metrics.Reads.Inc()
	return Counter{NS: ns, Key: key, Value: est, Estimate: true, ErrorBound: bound}, nil
}

// topApprox returns the k keys of the approximate namespace ns with the
// largest estimates, among this node's heavy hitters whose key starts with
// prefix. The candidates are the keys heavy in this node's own increments
// since it started; their values are the mesh-wide estimates of the merged
// sketch, each with its error bound.
func (n *Node) topApprox(ns string, k int, prefix string) ([]Counter, error) {
	if err := ValidateNamespace(ns); err != nil {
		return nil, err
	}
	rec := n.ns.Approx(ns)
	if rec == nil {
		return nil, fmt.Errorf("%w: %q is not an approximate namespace", ErrInvalidArgument, ns)
	}
	p, err := sketchParamsOf(ns, rec)
	if err != nil {
		return nil, err
	}
	top, err := n.sketches.Top(ns, p, k, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]Counter, len(top))
	for i, e := range top {
		out[i] = Counter{NS: ns, Key: e.Key, Value: e.Value, Estimate: true, ErrorBound: e.ErrorBound}
	}
	return out, nil
}
