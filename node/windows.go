package node

import (
	"context"
	"time"

	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/node/series"
)

// MaxFutureEvent bounds how far ahead of the node's clock an event time may
// be.
const MaxFutureEvent = series.MaxFutureEvent

// newWindows wires the node's time buckets (package node/series) to its hot
// set and namespaces.
func newWindows(n *Node) *series.Windows {
	return series.New(series.Config{
		Now:   n.cfg.Now,
		Log:   n.log,
		Store: n.store,
		Windows: func(ns string) []series.Window {
			rec := n.ns.Get(ns)
			if rec == nil {
				return nil
			}
			return rec.Runtime().Windows
		},
		All: func() map[string][]series.Window {
			out := make(map[string][]series.Window)
			n.ns.Range(func(ns string, rec *namespaceRecord) {
				if ws := rec.Runtime().Windows; len(ws) > 0 {
					out[ns] = ws
				}
			})
			return out
		},
		Add: func(ns, key string, by int64) error {
			return n.modify(ns, key, true, func(e *keyspace.Entry) error {
				_, err := e.C.Add(n.id, by)
				return err
			})
		},
		Read: n.readValue,
		Flush: func() error {
			if err := n.Flush(n.baseCtx); err != nil {
				return err
			}
			return n.Checkpoint()
		},
		OnDrop: func(moved int) { n.metrics.BucketDrops.Add(float64(moved)) },
	})
}

// readValue returns the value of ns/key and whether it exists, from memory
// or the store, without creating it.
func (n *Node) readValue(ns, key string) (v int64, found bool, err error) {
	err = n.withEntry(ns, key, false, func(_ *keyspace.Stripe, e *keyspace.Entry) error {
		if e != nil {
			v, found = e.C.Value(), true
		}
		return nil
	})
	return v, found, err
}

// SeriesPoint is one step of a series: the change during [T, T+step).
type SeriesPoint = series.Point

// SeriesResult is the answer to Series.
type SeriesResult = series.Result

// Limits of a series query.
const (
	MaxSeriesPoints  = series.MaxPoints
	MaxSeriesBuckets = series.MaxBuckets
)

// MaxPointInTimeBuckets bounds the buckets one point-in-time read sums.
const MaxPointInTimeBuckets = series.MaxPointInTimeBuckets

// Series returns the changes of ns/key in steps of step from from to to
// (points start at multiples of step since the epoch, the first one at or
// before from). A zero step is the namespace's finest window; a zero to is
// now; a zero from is 60 steps before to. step must be a multiple of a window
// the namespace keeps; the points are summed from the coarsest such window.
func (n *Node) Series(ctx context.Context, ns, key string, from, to time.Time, step time.Duration) (SeriesResult, error) {
	if err := validateName(ns, key); err != nil {
		return SeriesResult{}, err
	}
	if err := n.refuseSharded(ns, "a series"); err != nil {
		return SeriesResult{}, err
	}
	res, err := n.windows.Series(ctx, ns, key, from, to, step)
	if err == nil {
		n.metrics.Reads.Inc()
	}
	return res, err
}
