package query

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/internal/nodeerr"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/node/series"
)

// Stats are count, sum, average, minimum and maximum over a set of counters.
type Stats struct {
	Count int64
	Sum   int64
	Avg   float64
	Min   int64
	Max   int64
}

// add counts one counter's value; it fails when the sum leaves int64.
func (s *Stats) add(v int64) error {
	if !addOK(s.Sum, v) {
		return fmt.Errorf("%w: the sum leaves the int64 range", nodeerr.ErrOverflow)
	}
	if s.Count == 0 || v < s.Min {
		s.Min = v
	}
	if s.Count == 0 || v > s.Max {
		s.Max = v
	}
	s.Count++
	s.Sum += v
	s.Avg = float64(s.Sum) / float64(s.Count)
	return nil
}

// AggregateResult is the answer to Aggregate: the stats over every counter,
// and with a label, per value of the label.
type AggregateResult struct {
	Stats
	Groups map[string]Stats // nil without group by
	// Window and BucketStart name the bucket aggregated, for a windowed
	// query.
	Window      string
	BucketStart int64
}

// Aggregates answers aggregate queries by scanning the counters
// (Config.Scan); it keeps no state of its own.
type Aggregates struct{ cfg Config }

// NewAggregates returns the aggregate queries over cfg.Scan.
func NewAggregates(cfg Config) *Aggregates { return &Aggregates{cfg: cfg} }

// Aggregate returns the stats of the counters of ns under prefix: of their
// values, or with window of their changes in the window's current bucket.
// With groupBy, the counters are also split by the value of that label: a
// key's value in a group is the sum of its label series carrying that value
// (keys written without the label are in no group). The caller has checked
// ns and groupBy.
func (q *Aggregates) Aggregate(ctx context.Context, ns, prefix, windowName, groupBy string) (AggregateResult, error) {
	var out AggregateResult
	base := "" // the key prefix of the counters aggregated: "" or a bucket's
	if windowName != "" {
		ws, err := q.cfg.Windows(ns)
		if err != nil {
			return out, err
		}
		w, ok := series.Find(ws, windowName)
		if !ok {
			return out, fmt.Errorf("%w: namespace %q does not keep window %q", nodeerr.ErrInvalidArgument, ns, windowName)
		}
		start := q.cfg.Now().Unix() / w.G.Secs * w.G.Secs
		base = string(series.BucketKey(nil, w.G, start, ""))
		out.Window, out.BucketStart = w.G.Name, start
	}
	if !q.cfg.Exists(ns) && groupBy == "" {
		return out, nil
	}
	// The counters themselves.
	var scanErr error
	after := ""
	if base == "" {
		after = keyspace.FirstUserKey
	}
	err := q.cfg.Scan(ns, base+prefix, after, func(key string, value int64, live bool) bool {
		if keyspace.IsInternal(key[len(base):]) {
			return true // a label series' bucket
		}
		if !live {
			return true
		}
		if scanErr = out.add(value); scanErr != nil {
			return false
		}
		return ctx.Err() == nil
	})
	if err := scanResult(ctx, err, scanErr); err != nil {
		return out, err
	}
	if groupBy == "" {
		return out, nil
	}
	// The label series, summed per (label value, key).
	perKey := make(map[string]map[string]int64)
	seen := false
	seriesPrefix := base + string([]byte{keyspace.KindSeries}) + prefix
	err = q.cfg.Scan(ns, seriesPrefix, "", func(key string, value int64, live bool) bool {
		skey, labels, ok := series.ParseKey(key[len(base):])
		if !ok {
			return true
		}
		v, has := labels[groupBy]
		if !has {
			return true
		}
		seen = true
		if !live {
			return true
		}
		g := perKey[v]
		if g == nil {
			g = make(map[string]int64)
			perKey[v] = g
		}
		sum := g[skey]
		if !addOK(sum, value) {
			scanErr = fmt.Errorf("%w: the sum leaves the int64 range", nodeerr.ErrOverflow)
			return false
		}
		g[skey] = sum + value
		return ctx.Err() == nil
	})
	if err := scanResult(ctx, err, scanErr); err != nil {
		return out, err
	}
	if !seen {
		return out, fmt.Errorf("%w: no counter of %q under prefix %q was written with label %q", nodeerr.ErrInvalidArgument, ns, prefix, groupBy)
	}
	out.Groups = make(map[string]Stats, len(perKey))
	for v, keys := range perKey {
		var st Stats
		for _, val := range keys {
			if err := st.add(val); err != nil {
				return out, err
			}
		}
		out.Groups[v] = st
	}
	return out, nil
}

// scanResult is the error of a scan: the store's, else the callback's, else
// the context's.
func scanResult(ctx context.Context, err, scanErr error) error {
	if err == nil {
		err = scanErr
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return aggregateError(err)
	}
	return nil
}

// aggregateError passes the node's own errors and wraps the store's.
func aggregateError(err error) error {
	if errors.Is(err, nodeerr.ErrOverflow) || errors.Is(err, nodeerr.ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return kinderr.New(nodeerr.ErrUnavailable, err, "scan counters: %v", err)
}

// addOK reports whether v+by stays in int64.
func addOK(v, by int64) bool {
	return !((by > 0 && v > math.MaxInt64-by) || (by < 0 && v < math.MinInt64-by))
}
