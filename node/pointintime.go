package node

import (
	"context"
	"fmt"
	"time"
)

// Point-in-time reads (docs/api.md, "?at=").
//
// The value of a counter as of T is every change with an event time before
// T: the current value minus the changes after T. The changes are the
// counter's time buckets, read at the finest kept window whose retention
// still covers the span from T to now (the resolution; T is rounded down to
// it), plus its jumps. Increments reach the buckets at their event time
// (applyDerived); a reset or a delete changes the value without being an
// increment, so it records its jump (the value after it minus the value
// before, as this node saw them) in a bucket series of its own at the
// node's clock. Series, top-K and aggregates read the increments only; the
// jumps serve point-in-time reads. Both are internal counters, replicated
// and dropped by retention like every bucket.

// kindJump starts, inside a bucket key, the series of a key's jumps (resets
// and deletes). It appears only after a bucket key's start, never as the
// first byte of a key, so validReplicatedKey need not know it; top-K and
// aggregates skip it as an internal series.
const kindJump = 0x06

// jumpSeries returns the bucket series of the jumps of key.
func jumpSeries(key string) string { return string([]byte{kindJump}) + key }

// recordJump adds a jump of key's value by delta at the node's clock to
// every window ns keeps. The caller has applied the change and checked the
// node is writable; it must not hold a stripe lock.
func (n *Node) recordJump(ns, key string, delta int64) {
	if delta == 0 || isInternalKey(key) {
		return
	}
	n.ns.RLock()
	rec := n.ns.m[ns]
	n.ns.RUnlock()
	if rec == nil {
		return
	}
	rt := rec.runtime()
	sec := n.cfg.Now().Unix()
	var buf []byte
	for _, w := range rt.windows {
		buf = bucketKey(buf[:0], w.g, sec/w.g.secs*w.g.secs, jumpSeries(key))
		n.addOwn(ns, string(buf), delta)
	}
}

// jumpOf returns after-before, or 0 when it leaves int64 (a jump that large
// cannot be kept; the point-in-time reads before it are then off).
func jumpOf(before, after int64) int64 {
	d := after - before
	if (before > 0 && d > after) || (before < 0 && d < after) {
		return 0
	}
	return d
}

// MaxPointInTimeBuckets bounds the buckets one point-in-time read sums.
const MaxPointInTimeBuckets = MaxSeriesBuckets

// readAt answers a read with ReadOptions.At: the value as of At or, with
// ReadOptions.Window, the change during that window's bucket holding At.
func (n *Node) readAt(ctx context.Context, ns, key string, opts ReadOptions) (Counter, error) {
	rt, err := n.windowedRuntime(ns)
	if err != nil {
		return Counter{}, err
	}
	now := n.cfg.Now()
	at := opts.At
	if at.Unix() < 0 || at.After(now.Add(MaxFutureEvent)) {
		return Counter{}, fmt.Errorf("%w: at %s is outside the range a counter can have history for (1970 to an hour ahead of this node's clock)", ErrInvalidArgument, at.Format(time.RFC3339))
	}
	if opts.Window != "" {
		return n.bucketAt(rt, ns, key, at, opts.Window, now)
	}
	sec := at.Unix()
	res := -1
	for i, w := range rt.windows {
		if sec/w.g.secs*w.g.secs >= w.expiredBefore(now) {
			res = i
			break
		}
	}
	if res < 0 {
		return Counter{}, fmt.Errorf("%w: at %s is older than the retention of every window of %q, so its value then is not known", ErrInvalidArgument, at.Format(time.RFC3339), ns)
	}
	from := sec / rt.windows[res].g.secs * rt.windows[res].g.secs
	// Event times run at most MaxFutureEvent ahead of the clock that
	// accepted them, which is not ahead of now.
	horizon := now.Add(MaxFutureEvent).Unix() + 1
	// A change between reading the value and reading the buckets would
	// be counted on one side only: read the value again and retry.
	for attempt := 0; ; attempt++ {
		v1, _, err := n.readValue(ns, key)
		if err != nil {
			return Counter{}, err
		}
		after, err := n.changesSince(ctx, rt, res, ns, key, from, horizon, now)
		if err != nil {
			return Counter{}, err
		}
		v2, _, err := n.readValue(ns, key)
		if err != nil {
			return Counter{}, err
		}
		if v1 != v2 && attempt < 3 {
			continue
		}
		if !clampAdd(v2, -after) {
			return Counter{}, fmt.Errorf("%w: the value as of %s leaves the int64 range", ErrOverflow, at.Format(time.RFC3339))
		}
		n.metrics.reads.Inc()
		return Counter{NS: ns, Key: key, Value: n.clampToBounds(ns, v2-after),
			Resolution: rt.windows[res].g.name, AsOf: time.Unix(from, 0).UTC()}, nil
	}
}

// changesSince sums the changes of key (increments and jumps) in the
// buckets from from (a start of a bucket of window res) up to horizon.
// Where a coarser kept window's bucket starts, it reads that one instead of
// the finer ones it holds, so a week back costs tens of reads, not
// thousands.
func (n *Node) changesSince(ctx context.Context, rt *nsRuntime, res int, ns, key string, from, horizon int64, now time.Time) (int64, error) {
	var sum int64
	var buf []byte
	jumps := jumpSeries(key)
	reads := 0
	for c := from; c < horizon; {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		w := rt.windows[res]
		for j := len(rt.windows) - 1; j > res; j-- {
			if v := rt.windows[j]; c%v.g.secs == 0 && c >= v.expiredBefore(now) {
				w = v
				break
			}
		}
		if reads++; reads > MaxPointInTimeBuckets {
			return 0, fmt.Errorf("%w: reading %q as of then needs more than %d buckets of %s; keep a coarser window in the namespace, or read a later time", ErrInvalidArgument, key, MaxPointInTimeBuckets, rt.windows[res].g.name)
		}
		for _, series := range []string{key, jumps} {
			buf = bucketKey(buf[:0], w.g, c, series)
			v, _, err := n.readValue(ns, string(buf))
			if err != nil {
				return 0, err
			}
			if !clampAdd(sum, v) {
				return 0, fmt.Errorf("%w: the changes of %q since then leave the int64 range", ErrOverflow, key)
			}
			sum += v
		}
		c += w.g.secs
	}
	return sum, nil
}

// bucketAt answers the change of key during the bucket of window name that
// holds at: its increments and decrements, as series does.
func (n *Node) bucketAt(rt *nsRuntime, ns, key string, at time.Time, name string, now time.Time) (Counter, error) {
	w, ok := rt.window(name)
	if !ok {
		return Counter{}, fmt.Errorf("%w: namespace %q does not keep window %q", ErrInvalidArgument, ns, name)
	}
	start := at.Unix() / w.g.secs * w.g.secs
	if start < w.expiredBefore(now) {
		return Counter{}, fmt.Errorf("%w: the %s bucket holding %s is past the window's retention (%s)", ErrInvalidArgument, name, at.Format(time.RFC3339), w.retention)
	}
	v, _, err := n.readValue(ns, string(bucketKey(nil, w.g, start, key)))
	if err != nil {
		return Counter{}, err
	}
	n.metrics.reads.Inc()
	return Counter{NS: ns, Key: key, Value: v, Window: w.g.name, BucketStart: time.Unix(start, 0).UTC()}, nil
}
