package node

import (
	"context"
	"fmt"
	"time"

	"github.com/countmesh/countmesh/node/approx"
	"github.com/countmesh/countmesh/node/query"
)

// MaxTopK bounds the k of a top-K query.
const MaxTopK = query.MaxTopK

// Stats are count, sum, average, minimum and maximum over a set of counters.
type Stats = query.Stats

// AggregateResult is the answer to Aggregate: the stats over every counter,
// and with a label, per value of the label.
type AggregateResult = query.AggregateResult

// queryConfig wires the queries (package node/query) to the hot set and the
// namespaces.
func queryConfig(n *Node) query.Config {
	return query.Config{
		Now:  n.cfg.Now,
		Log:  n.log,
		Done: n.done,
		Scan: func(ns, prefix, after string, fn func(key string, value int64, live bool) bool) error {
			return n.scanLive(ns, prefix, after, true, func(key string, c scanned) bool {
				return fn(key, c.Value, c.live)
			})
		},
		Windows: n.windows.Kept,
		Exists:  func(ns string) bool { return n.ns.Get(ns) != nil },
	}
}

// TopResult is the answer to Top.
type TopResult struct {
	Items []Counter
	Exact bool
	// Window and BucketStart name the bucket ranked, for a windowed query.
	Window      string
	BucketStart time.Time
}

// Top returns the k largest counters of ns whose key starts with prefix, of
// all time or, with window, of the window's current bucket.
func (n *Node) Top(ctx context.Context, ns string, k int, windowName, prefix string) (TopResult, error) {
	if err := ValidateNamespace(ns); err != nil {
		return TopResult{}, err
	}
	if err := n.refuseSharded(ns, "top-K"); err != nil {
		return TopResult{}, err
	}
	if k < 1 || k > MaxTopK {
		return TopResult{}, fmt.Errorf("%w: k must be 1 to %d, got %d", ErrInvalidArgument, MaxTopK, k)
	}
	if rec := n.ns.Approx(ns); rec != nil {
		if windowName != "" {
			return TopResult{}, errApproxRefused(ns, "it keeps no time buckets, so it has no top of a window; leave window out")
		}
		// The candidates are the keys heavy in this node's own increments
		// since it started; their values are the mesh-wide estimates of
		// the merged sketch, each with its error bound.
		p, err := approx.ParamsOf(ns, rec)
		var top []approx.Estimated
		if err == nil {
			top, err = n.sketches.Top(ns, p, k, prefix)
		}
		if err != nil {
			return TopResult{}, err
		}
		items := make([]Counter, len(top))
		for i, e := range top {
			items[i] = Counter{NS: ns, Key: e.Key, Value: e.Value, Estimate: true, ErrorBound: e.ErrorBound}
		}
		return TopResult{Items: items}, nil // estimates: never exact
	}
	res, err := n.tops.Top(ctx, ns, k, windowName, prefix)
	if err != nil {
		return TopResult{}, err
	}
	out := TopResult{Items: make([]Counter, len(res.Items)), Exact: res.Exact, Window: res.Window, BucketStart: res.BucketStart}
	for i, it := range res.Items {
		out.Items[i] = Counter{NS: ns, Key: it.Key, Value: it.Value}
	}
	n.metrics.Reads.Inc()
	return out, nil
}

// Aggregate returns the stats of the counters of ns under prefix: of their
// values, or with window of their changes in the window's current bucket.
// With groupBy, the counters are also split by the value of that label: a
// key's value in a group is the sum of its label series carrying that value
// (keys written without the label are in no group).
func (n *Node) Aggregate(ctx context.Context, ns, prefix, windowName, groupBy string) (AggregateResult, error) {
	if err := ValidateNamespace(ns); err != nil {
		return AggregateResult{}, err
	}
	if err := n.refuseSharded(ns, "an aggregate"); err != nil {
		return AggregateResult{}, err
	}
	if groupBy != "" && ValidateNamespace(groupBy) != nil {
		return AggregateResult{}, fmt.Errorf("%w: group_by %q is not a label name ([a-z0-9][a-z0-9_.-]{0,63})", ErrInvalidArgument, groupBy)
	}
	return n.aggregates.Aggregate(ctx, ns, prefix, windowName, groupBy)
}
