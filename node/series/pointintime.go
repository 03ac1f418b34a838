package series

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/countmesh/countmesh/node/internal/nodeerr"
)

// Point-in-time reads (docs/api.md, "?at=").
//
// The value of a counter as of T is every change with an event time before
// T: the current value minus the changes after T. The changes are the
// counter's time buckets, read at the finest kept window whose retention
// still covers the span from T to now (the resolution; T is rounded down to
// it), plus its jumps. Increments reach the buckets at their event time
// (Count); a reset or a delete changes the value without being an
// increment, so it records its jump (the value after it minus the value
// before, as this node saw them) in a bucket series of its own at the
// node's clock (RecordJump). Series, top-K and aggregates read the
// increments only; the jumps serve point-in-time reads. Both are internal
// counters, replicated and dropped by retention like every bucket.

// MaxPointInTimeBuckets bounds the buckets one point-in-time read sums.
const MaxPointInTimeBuckets = MaxBuckets

// At is the answer to a read as of a time.
type At struct {
	Value int64
	// Resolution and AsOf say how a read of the value as of a time was
	// resolved: the window, and the time rounded down to it.
	Resolution string
	AsOf       time.Time
	// Window and BucketStart name the bucket a read of one window's bucket
	// answered from.
	Window      string
	BucketStart time.Time
}

// ReadAt answers a read as of at: the value of ns/key as of at or, with a
// window, the change during that window's bucket holding at.
func (t *Windows) ReadAt(ctx context.Context, ns, key string, at time.Time, window string) (At, error) {
	ws, err := t.Kept(ns)
	if err != nil {
		return At{}, err
	}
	now := t.cfg.Now()
	if at.Unix() < 0 || at.After(now.Add(MaxFutureEvent)) {
		return At{}, fmt.Errorf("%w: at %s is outside the range a counter can have history for (1970 to an hour ahead of this node's clock)", nodeerr.ErrInvalidArgument, at.Format(time.RFC3339))
	}
	if window != "" {
		return t.bucketAt(ws, ns, key, at, window, now)
	}
	sec := at.Unix()
	res := -1
	for i, w := range ws {
		if w.Start(sec) >= w.ExpiredBefore(now) {
			res = i
			break
		}
	}
	if res < 0 {
		return At{}, fmt.Errorf("%w: at %s is older than the retention of every window of %q, so its value then is not known", nodeerr.ErrInvalidArgument, at.Format(time.RFC3339), ns)
	}
	from := ws[res].Start(sec)
	// Event times run at most MaxFutureEvent ahead of the clock that
	// accepted them, which is not ahead of now.
	horizon := now.Add(MaxFutureEvent).Unix() + 1
	// A change between reading the value and reading the buckets would
	// be counted on one side only: read the value again and retry.
	for attempt := 0; ; attempt++ {
		v1, _, err := t.cfg.Read(ns, key)
		if err != nil {
			return At{}, err
		}
		after, err := t.changesSince(ctx, ws, res, ns, key, from, horizon, now)
		if err != nil {
			return At{}, err
		}
		v2, _, err := t.cfg.Read(ns, key)
		if err != nil {
			return At{}, err
		}
		if v1 != v2 && attempt < 3 {
			continue
		}
		if !addOK(v2, -after) {
			return At{}, fmt.Errorf("%w: the value as of %s leaves the int64 range", nodeerr.ErrOverflow, at.Format(time.RFC3339))
		}
		return At{Value: v2 - after, Resolution: ws[res].G.Name, AsOf: time.Unix(from, 0).UTC()}, nil
	}
}

// changesSince sums the changes of key (increments and jumps) in the
// buckets from from (a start of a bucket of window res) up to horizon.
// Where a coarser kept window's bucket starts, it reads that one instead of
// the finer ones it holds, so a week back costs tens of reads, not
// thousands.
func (t *Windows) changesSince(ctx context.Context, ws []Window, res int, ns, key string, from, horizon int64, now time.Time) (int64, error) {
	var sum int64
	var buf []byte
	jumps := JumpSeries(key)
	reads := 0
	for c := from; c < horizon; {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		w := ws[res]
		for j := len(ws) - 1; j > res; j-- {
			if v := ws[j]; c%v.G.Secs == 0 && c >= v.ExpiredBefore(now) {
				w = v
				break
			}
		}
		if reads++; reads > MaxPointInTimeBuckets {
			return 0, fmt.Errorf("%w: reading %q as of then needs more than %d buckets of %s; keep a coarser window in the namespace, or read a later time", nodeerr.ErrInvalidArgument, key, MaxPointInTimeBuckets, ws[res].G.Name)
		}
		for _, series := range []string{key, jumps} {
			buf = BucketKey(buf[:0], w.G, c, series)
			v, _, err := t.cfg.Read(ns, string(buf))
			if err != nil {
				return 0, err
			}
			if !addOK(sum, v) {
				return 0, fmt.Errorf("%w: the changes of %q since then leave the int64 range", nodeerr.ErrOverflow, key)
			}
			sum += v
		}
		c += w.G.Secs
	}
	return sum, nil
}

// bucketAt answers the change of key during the bucket of window name that
// holds at: its increments and decrements, as Series does.
func (t *Windows) bucketAt(ws []Window, ns, key string, at time.Time, name string, now time.Time) (At, error) {
	w, ok := Find(ws, name)
	if !ok {
		return At{}, fmt.Errorf("%w: namespace %q does not keep window %q", nodeerr.ErrInvalidArgument, ns, name)
	}
	start := w.Start(at.Unix())
	if start < w.ExpiredBefore(now) {
		return At{}, fmt.Errorf("%w: the %s bucket holding %s is past the window's retention (%s)", nodeerr.ErrInvalidArgument, name, at.Format(time.RFC3339), w.Retention)
	}
	v, _, err := t.cfg.Read(ns, string(BucketKey(nil, w.G, start, key)))
	if err != nil {
		return At{}, err
	}
	return At{Value: v, Window: w.G.Name, BucketStart: time.Unix(start, 0).UTC()}, nil
}

// addOK reports whether v+by stays in int64.
func addOK(v, by int64) bool {
	return !((by > 0 && v > math.MaxInt64-by) || (by < 0 && v < math.MinInt64-by))
}
