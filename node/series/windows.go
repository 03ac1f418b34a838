package series

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/internal/nodeerr"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/store"
)

// Config holds what Windows needs from the node.
type Config struct {
	Now func() time.Time
	Log *zap.Logger
	// Store is where retention range-deletes the buckets past it.
	Store *store.Store
	// Windows returns the windows namespace ns keeps, finest first (none
	// for a namespace that does not exist).
	Windows func(ns string) []Window
	// All returns every namespace that keeps windows, with its windows.
	All func() map[string][]Window
	// Add adds by to this node's own slot of the internal counter ns/key,
	// creating it. The caller has checked the node is writable.
	Add func(ns, key string, by int64) error
	// Read returns the value of ns/key and whether it exists, without
	// creating it.
	Read func(ns, key string) (v int64, found bool, err error)
	// Flush makes every change so far durable and checkpointed, so that a
	// range delete is not written over by counters still waiting for the
	// disk.
	Flush func() error
	// OnDrop counts the range deletes of a retention pass.
	OnDrop func(n int)
}

// Windows keeps the time buckets of the counters: it counts increments in
// the buckets of their event time, records jumps (resets and deletes), reads
// series and values as of a time, and drops the buckets past their
// retention. It is safe for concurrent use.
type Windows struct {
	cfg Config

	retention struct {
		sync.Mutex                  // serialises retention passes; guards edges
		edges      map[string]int64 // ns 0x00 window -> bucket start dropped up to
	}
}

// New returns the time buckets of a node.
func New(cfg Config) *Windows { return &Windows{cfg: cfg} }

// MaxFutureEvent bounds how far ahead of the node's clock an event time may
// be.
const MaxFutureEvent = time.Hour

// EventTime returns the time an increment counts at: at, or now.
func EventTime(now, at time.Time) (time.Time, error) {
	if at.IsZero() {
		return now, nil
	}
	if at.Unix() < 0 {
		return time.Time{}, fmt.Errorf("%w: at %s is before 1970", nodeerr.ErrInvalidArgument, at.Format(time.RFC3339))
	}
	if at.After(now.Add(MaxFutureEvent)) {
		return time.Time{}, fmt.Errorf("%w: at %s is more than %s ahead of this node's clock (%s)",
			nodeerr.ErrInvalidArgument, at.Format(time.RFC3339), MaxFutureEvent, now.UTC().Format(time.RFC3339))
	}
	return at, nil
}

// Count applies an increment of key to the counters derived from it: the
// label series when labels are given, and every window of ws's bucket of the
// key and of the series at the event time. Buckets already past their
// retention are skipped (the store drops them). The caller has checked the
// node is writable.
func (t *Windows) Count(ws []Window, ns, key string, labels map[string]string, at time.Time, by int64) {
	series := ""
	if len(labels) > 0 {
		series = Key(key, labels)
		t.add(ns, series, by)
	}
	if len(ws) == 0 {
		return
	}
	now := t.cfg.Now()
	sec := at.Unix()
	var buf []byte
	for _, w := range ws {
		start := w.Start(sec)
		if start < w.ExpiredBefore(now) {
			continue
		}
		buf = BucketKey(buf[:0], w.G, start, key)
		t.add(ns, string(buf), by)
		if series != "" {
			buf = BucketKey(buf[:0], w.G, start, series)
			t.add(ns, string(buf), by)
		}
	}
}

// add adds by to this node's slot of the internal counter ns/key. An
// internal counter that would leave int64 keeps its value (its user
// counter's own check has passed; this needs 2^63 in one bucket).
func (t *Windows) add(ns, key string, by int64) {
	if err := t.cfg.Add(ns, key, by); err != nil {
		t.cfg.Log.Warn("derived counter not updated", zap.String("ns", ns), zap.Error(err))
	}
}

// Kept returns the windows of a namespace that keeps some, finest first,
// or an error saying it keeps none.
func (t *Windows) Kept(ns string) ([]Window, error) {
	ws := t.cfg.Windows(ns)
	if len(ws) == 0 {
		return nil, fmt.Errorf("%w: namespace %q keeps no time windows; set \"windows\" in its config (PUT /v1/namespaces/%s)", nodeerr.ErrInvalidArgument, ns, ns)
	}
	return ws, nil
}

// Point is one step of a series: the change during [T, T+step).
type Point struct {
	T     time.Time
	Delta int64
}

// Result is the answer to Series.
type Result struct {
	Step   time.Duration
	Window string // the granularity the points were summed from
	Points []Point
	Total  int64
}

// Limits of a series query.
const (
	MaxPoints  = 10_000
	MaxBuckets = 100_000
)

// Series returns the changes of ns/key in steps of step from from to to
// (points start at multiples of step since the epoch, the first one at or
// before from). A zero step is the namespace's finest window; a zero to is
// now; a zero from is 60 steps before to. step must be a multiple of a window
// the namespace keeps; the points are summed from the coarsest such window.
func (t *Windows) Series(ctx context.Context, ns, key string, from, to time.Time, step time.Duration) (Result, error) {
	ws, err := t.Kept(ns)
	if err != nil {
		return Result{}, err
	}
	if step == 0 {
		step = time.Duration(ws[0].G.Secs) * time.Second
	}
	if step < time.Second || step%time.Second != 0 {
		return Result{}, fmt.Errorf("%w: step must be a whole number of seconds, got %s", nodeerr.ErrInvalidArgument, step)
	}
	if to.IsZero() {
		to = t.cfg.Now()
	}
	if from.IsZero() {
		from = to.Add(-60 * step)
	}
	if from.After(to) {
		return Result{}, fmt.Errorf("%w: from (%s) is after to (%s)", nodeerr.ErrInvalidArgument, from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	if from.Unix() < 0 {
		return Result{}, fmt.Errorf("%w: from is before 1970", nodeerr.ErrInvalidArgument)
	}
	stepSecs := int64(step / time.Second)
	var w Window
	found := false
	for _, c := range ws {
		if stepSecs%c.G.Secs == 0 {
			w, found = c, true // windows are finest first: the last match is the coarsest
		}
	}
	if !found {
		names := make([]string, len(ws))
		for i, c := range ws {
			names[i] = c.G.Name
		}
		return Result{}, fmt.Errorf("%w: step %s is not a multiple of a window %q keeps (%s)", nodeerr.ErrInvalidArgument, step, ns, strings.Join(names, ", "))
	}
	first := from.Unix() / stepSecs * stepSecs
	last := to.Unix() // points start before to
	npoints := (last - first + stepSecs - 1) / stepSecs
	if last == first {
		npoints = 0
	}
	if npoints > MaxPoints {
		return Result{}, fmt.Errorf("%w: %d points asked; at most %d (use a larger step or a shorter range)", nodeerr.ErrInvalidArgument, npoints, MaxPoints)
	}
	if npoints*(stepSecs/w.G.Secs) > MaxBuckets {
		return Result{}, fmt.Errorf("%w: the range spans more than %d buckets of %s; use a shorter range", nodeerr.ErrInvalidArgument, MaxBuckets, w.G.Name)
	}
	out := Result{Step: step, Window: w.G.Name, Points: make([]Point, 0, npoints)}
	keep := w.ExpiredBefore(t.cfg.Now())
	var buf []byte
	for s := first; s < last; s += stepSecs {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		p := Point{T: time.Unix(s, 0).UTC()}
		for b := s; b < s+stepSecs; b += w.G.Secs {
			if b < keep {
				continue
			}
			buf = BucketKey(buf[:0], w.G, b, key)
			v, _, err := t.cfg.Read(ns, string(buf))
			if err != nil {
				return Result{}, err
			}
			p.Delta += v
		}
		out.Total += p.Delta
		out.Points = append(out.Points, p)
	}
	return out, nil
}

// DropExpired range-deletes, for every namespace and window with a
// retention, the buckets past it. Each run costs one range tombstone per
// window whose edge moved, whatever the number of buckets.
func (t *Windows) DropExpired() error {
	now := t.cfg.Now()
	type job struct {
		ns   string
		w    Window
		edge int64
	}
	var jobs []job
	for ns, ws := range t.cfg.All() {
		for _, w := range ws {
			if w.Retention > 0 {
				jobs = append(jobs, job{ns, w, w.ExpiredBefore(now)})
			}
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	// Counters still waiting for the committer or a checkpoint would be
	// written back over the range tombstone: commit and write them first
	// (replicated changes of async namespaces may still wait for the
	// committer).
	if err := t.cfg.Flush(); err != nil {
		return err
	}
	t.retention.Lock()
	defer t.retention.Unlock()
	if t.retention.edges == nil {
		t.retention.edges = make(map[string]int64)
	}
	b := t.cfg.Store.NewBatch()
	defer b.Close()
	moved := 0
	for _, j := range jobs {
		id := j.ns + "\x00" + j.w.G.Name
		if j.edge <= t.retention.edges[id] {
			continue
		}
		b.DeleteCounterRange(j.ns, string(BucketKey(nil, j.w.G, 0, "")), string(BucketKey(nil, j.w.G, j.edge, "")))
		moved++
	}
	if moved == 0 {
		return nil
	}
	if err := b.Commit(false); err != nil {
		return kinderr.New(nodeerr.ErrUnavailable, err, "drop expired buckets: %v", err)
	}
	for _, j := range jobs {
		id := j.ns + "\x00" + j.w.G.Name
		t.retention.edges[id] = max(t.retention.edges[id], j.edge)
	}
	t.cfg.OnDrop(moved)
	return nil
}

// RecordJump adds a jump of key's value by delta at the node's clock to
// every window ns keeps. The caller has applied the change and checked the
// node is writable; it must not hold a stripe lock.
func (t *Windows) RecordJump(ns, key string, delta int64) {
	if delta == 0 || keyspace.IsInternal(key) {
		return
	}
	sec := t.cfg.Now().Unix()
	var buf []byte
	for _, w := range t.cfg.Windows(ns) {
		buf = BucketKey(buf[:0], w.G, w.Start(sec), JumpSeries(key))
		t.add(ns, string(buf), delta)
	}
}
