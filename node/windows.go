package node

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// A granularity is one of the time-bucket widths a namespace may keep.
type granularity struct {
	name string
	idx  byte  // its byte in a bucket key
	secs int64 // width in seconds; buckets start at multiples of it (UTC)
}

// granularities lists Windows with their widths, finest first.
var granularities = []granularity{
	{"1s", 0, 1}, {"10s", 1, 10}, {"1m", 2, 60}, {"5m", 3, 300}, {"1h", 4, 3600}, {"1d", 5, 86400},
}

func granularityByName(name string) (granularity, bool) {
	for _, g := range granularities {
		if g.name == name {
			return g, true
		}
	}
	return granularity{}, false
}

// window is a granularity a namespace keeps, with its retention.
type window struct {
	g         granularity
	retention time.Duration // 0 keeps buckets forever
}

// expiredBefore returns the start of the oldest bucket retention still
// keeps at now: a bucket starting before it ended more than retention ago.
// With no retention it returns the smallest start.
func (w window) expiredBefore(now time.Time) int64 {
	if w.retention <= 0 {
		return 0
	}
	edge := now.Add(-w.retention).Unix()
	if edge <= 0 {
		return 0
	}
	return edge / w.g.secs * w.g.secs
}

// nsRuntime is the parsed form of a namespace config that the write and read
// paths need.
type nsRuntime struct {
	windows  []window // finest first
	ttl      time.Duration
	idWindow time.Duration // how long increment ids are remembered
}

// runtime returns the parsed config. Records are immutable once installed,
// and prepare runs before a record is installed.
func (r *namespaceRecord) runtime() *nsRuntime {
	if r.rt != nil {
		return r.rt
	}
	return parseRuntime(r.Config)
}

// prepare parses the config once, before the record is shared.
func (r *namespaceRecord) prepare() { r.rt = parseRuntime(r.Config) }

func parseRuntime(cfg NamespaceConfig) *nsRuntime {
	rt := &nsRuntime{}
	for _, name := range cfg.Windows {
		g, ok := granularityByName(name)
		if !ok {
			continue // normalize refuses unknown windows
		}
		w := window{g: g}
		if s, ok := cfg.Retention[name]; ok {
			w.retention, _ = ParseDuration(s)
		}
		rt.windows = append(rt.windows, w)
	}
	slices.SortFunc(rt.windows, func(a, b window) int { return int(a.g.secs - b.g.secs) })
	rt.ttl, _ = ParseDuration(cfg.TTL)
	rt.idWindow, _ = ParseDuration(cfg.IdempotencyWindow)
	return rt
}

// window returns the namespace's window of granularity name.
func (rt *nsRuntime) window(name string) (window, bool) {
	for _, w := range rt.windows {
		if w.g.name == name {
			return w, true
		}
	}
	return window{}, false
}

// bucketKey appends the internal key of the bucket of series (a user key or
// a label series key) of granularity g starting at start (unix seconds).
func bucketKey(buf []byte, g granularity, start int64, series string) []byte {
	buf = append(buf, kindBucket, g.idx)
	buf = binary.BigEndian.AppendUint64(buf, uint64(start))
	return append(buf, series...)
}

// parseBucketKey undoes bucketKey.
func parseBucketKey(key string) (g granularity, start int64, series string, ok bool) {
	if len(key) < 10 || key[0] != kindBucket || int(key[1]) >= len(granularities) {
		return g, 0, "", false
	}
	g = granularities[key[1]]
	start = int64(binary.BigEndian.Uint64([]byte(key[2:10])))
	return g, start, key[10:], true
}

// seriesKey returns the internal key of the label series labels of key:
// kindSeries, key, then for each label in name order 0x00 name 0x1f value.
// Keys and label values hold no control characters, so it parses back.
func seriesKey(key string, labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteByte(kindSeries)
	b.WriteString(key)
	for _, name := range names {
		b.WriteByte(0)
		b.WriteString(name)
		b.WriteByte(0x1f)
		b.WriteString(labels[name])
	}
	return b.String()
}

// parseSeriesKey undoes seriesKey.
func parseSeriesKey(s string) (key string, labels map[string]string, ok bool) {
	if len(s) < 2 || s[0] != kindSeries {
		return "", nil, false
	}
	parts := strings.Split(s[1:], "\x00")
	labels = make(map[string]string, len(parts)-1)
	for _, p := range parts[1:] {
		name, value, found := strings.Cut(p, "\x1f")
		if !found {
			return "", nil, false
		}
		labels[name] = value
	}
	return parts[0], labels, true
}

// MaxFutureEvent bounds how far ahead of the node's clock an event time may
// be.
const MaxFutureEvent = time.Hour

// eventTime returns the time an increment counts at: at, or now.
func (n *Node) eventTime(at time.Time) (time.Time, error) {
	now := n.cfg.Now()
	if at.IsZero() {
		return now, nil
	}
	if at.Unix() < 0 {
		return time.Time{}, fmt.Errorf("%w: at %s is before 1970", ErrInvalidArgument, at.Format(time.RFC3339))
	}
	if at.After(now.Add(MaxFutureEvent)) {
		return time.Time{}, fmt.Errorf("%w: at %s is more than %s ahead of this node's clock (%s)",
			ErrInvalidArgument, at.Format(time.RFC3339), MaxFutureEvent, now.UTC().Format(time.RFC3339))
	}
	return at, nil
}

// applyDerived applies an increment of key to the counters derived from it:
// the label series when labels are given, and every window's bucket of the
// key and of the series at the event time. Buckets already past their
// retention are skipped (the store drops them). The caller has checked the
// node is writable.
func (n *Node) applyDerived(rt *nsRuntime, ns, key string, labels map[string]string, at time.Time, by int64) {
	series := ""
	if len(labels) > 0 {
		series = seriesKey(key, labels)
		n.addOwn(ns, series, by)
	}
	if len(rt.windows) == 0 {
		return
	}
	now := n.cfg.Now()
	sec := at.Unix()
	var buf []byte
	for _, w := range rt.windows {
		start := sec / w.g.secs * w.g.secs
		if start < w.expiredBefore(now) {
			continue
		}
		buf = bucketKey(buf[:0], w.g, start, key)
		n.addOwn(ns, string(buf), by)
		if series != "" {
			buf = bucketKey(buf[:0], w.g, start, series)
			n.addOwn(ns, string(buf), by)
		}
	}
}

// addOwn adds by to this node's slot of the internal counter ns/key. An
// internal counter that would leave int64 keeps its value (its user
// counter's own check has passed; this needs 2^63 in one bucket).
func (n *Node) addOwn(ns, key string, by int64) {
	err := n.modify(ns, key, true, func(e *entry) error {
		_, err := e.c.Add(n.id, by)
		return err
	})
	if err != nil {
		n.log.Warn("derived counter not updated", zap.String("ns", ns), zap.Error(err))
	}
}

// bucketExpired reports whether key is a time bucket that the namespace's
// retention has already dropped.
func (n *Node) bucketExpired(rec *namespaceRecord, key string) bool {
	if len(key) == 0 || key[0] != kindBucket {
		return false
	}
	g, start, _, ok := parseBucketKey(key)
	if !ok {
		return false
	}
	w, kept := rec.runtime().window(g.name)
	return kept && start < w.expiredBefore(n.cfg.Now())
}

// readValue returns the value of ns/key and whether it exists, from memory
// or the store, without creating it.
func (n *Node) readValue(ns, key string) (int64, bool, error) {
	var buf [700]byte
	ck := compositeKey(buf[:0], ns, key)
	s := &n.stripes[n.stripeOf(ck)]
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := n.lookupLocked(s, ck, ns, key, false)
	if err != nil {
		return 0, false, fmt.Errorf("%w: read counter: %v", ErrUnavailable, err)
	}
	if e == nil {
		return 0, false, nil
	}
	return e.c.Value(), true, nil
}

// SeriesPoint is one step of a series: the change during [T, T+step).
type SeriesPoint struct {
	T     time.Time
	Delta int64
}

// SeriesResult is the answer to Series.
type SeriesResult struct {
	Step   time.Duration
	Window string // the granularity the points were summed from
	Points []SeriesPoint
	Total  int64
}

// Limits of a series query.
const (
	MaxSeriesPoints  = 10_000
	MaxSeriesBuckets = 100_000
)

// Series returns the changes of ns/key in steps of step from from to to
// (points start at multiples of step since the epoch, the first one at or
// before from). A zero step is the namespace's finest window; a zero to is
// now; a zero from is 60 steps before to. step must be a multiple of a window
// the namespace keeps; the points are summed from the coarsest such window.
func (n *Node) Series(ctx context.Context, ns, key string, from, to time.Time, step time.Duration) (SeriesResult, error) {
	if err := validateName(ns, key); err != nil {
		return SeriesResult{}, err
	}
	rt, err := n.windowedRuntime(ns)
	if err != nil {
		return SeriesResult{}, err
	}
	if step == 0 {
		step = time.Duration(rt.windows[0].g.secs) * time.Second
	}
	if step < time.Second || step%time.Second != 0 {
		return SeriesResult{}, fmt.Errorf("%w: step must be a whole number of seconds, got %s", ErrInvalidArgument, step)
	}
	if to.IsZero() {
		to = n.cfg.Now()
	}
	if from.IsZero() {
		from = to.Add(-60 * step)
	}
	if from.After(to) {
		return SeriesResult{}, fmt.Errorf("%w: from (%s) is after to (%s)", ErrInvalidArgument, from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	if from.Unix() < 0 {
		return SeriesResult{}, fmt.Errorf("%w: from is before 1970", ErrInvalidArgument)
	}
	stepSecs := int64(step / time.Second)
	var w window
	found := false
	for _, c := range rt.windows {
		if stepSecs%c.g.secs == 0 {
			w, found = c, true // windows are finest first: the last match is the coarsest
		}
	}
	if !found {
		names := make([]string, len(rt.windows))
		for i, c := range rt.windows {
			names[i] = c.g.name
		}
		return SeriesResult{}, fmt.Errorf("%w: step %s is not a multiple of a window %q keeps (%s)", ErrInvalidArgument, step, ns, strings.Join(names, ", "))
	}
	first := from.Unix() / stepSecs * stepSecs
	last := to.Unix() // points start before to
	npoints := (last - first + stepSecs - 1) / stepSecs
	if last == first {
		npoints = 0
	}
	if npoints > MaxSeriesPoints {
		return SeriesResult{}, fmt.Errorf("%w: %d points asked; at most %d (use a larger step or a shorter range)", ErrInvalidArgument, npoints, MaxSeriesPoints)
	}
	if npoints*(stepSecs/w.g.secs) > MaxSeriesBuckets {
		return SeriesResult{}, fmt.Errorf("%w: the range spans more than %d buckets of %s; use a shorter range", ErrInvalidArgument, MaxSeriesBuckets, w.g.name)
	}
	out := SeriesResult{Step: step, Window: w.g.name, Points: make([]SeriesPoint, 0, npoints)}
	keep := w.expiredBefore(n.cfg.Now())
	var buf []byte
	for t := first; t < last; t += stepSecs {
		if err := ctx.Err(); err != nil {
			return SeriesResult{}, err
		}
		p := SeriesPoint{T: time.Unix(t, 0).UTC()}
		for b := t; b < t+stepSecs; b += w.g.secs {
			if b < keep {
				continue
			}
			buf = bucketKey(buf[:0], w.g, b, key)
			v, _, err := n.readValue(ns, string(buf))
			if err != nil {
				return SeriesResult{}, err
			}
			p.Delta += v
		}
		out.Total += p.Delta
		out.Points = append(out.Points, p)
	}
	n.metrics.reads.Inc()
	return out, nil
}

// windowedRuntime returns the runtime of a namespace that keeps windows.
func (n *Node) windowedRuntime(ns string) (*nsRuntime, error) {
	n.ns.RLock()
	rec := n.ns.m[ns]
	n.ns.RUnlock()
	if rec == nil || len(rec.runtime().windows) == 0 {
		return nil, fmt.Errorf("%w: namespace %q keeps no time windows; set \"windows\" in its config (PUT /v1/namespaces/%s)", ErrInvalidArgument, ns, ns)
	}
	return rec.runtime(), nil
}

// dropExpiredBuckets range-deletes, for every namespace and window with a
// retention, the buckets past it. Each run costs one range tombstone per
// window whose edge moved, whatever the number of buckets.
func (n *Node) dropExpiredBuckets() error {
	now := n.cfg.Now()
	type job struct {
		ns   string
		w    window
		edge int64
	}
	var jobs []job
	n.ns.RLock()
	for ns, rec := range n.ns.m {
		for _, w := range rec.runtime().windows {
			if w.retention > 0 {
				jobs = append(jobs, job{ns, w, w.expiredBefore(now)})
			}
		}
	}
	n.ns.RUnlock()
	if len(jobs) == 0 {
		return nil
	}
	// Counters still waiting for a checkpoint would be written back over
	// the range tombstone: write them first.
	if err := n.Checkpoint(); err != nil {
		return err
	}
	n.retentionMu.Lock()
	defer n.retentionMu.Unlock()
	if n.retentionEdges == nil {
		n.retentionEdges = make(map[string]int64)
	}
	b := n.store.NewBatch()
	defer b.Close()
	moved := 0
	for _, j := range jobs {
		id := j.ns + "\x00" + j.w.g.name
		if j.edge <= n.retentionEdges[id] {
			continue
		}
		b.DeleteCounterRange(j.ns, string(bucketKey(nil, j.w.g, 0, "")), string(bucketKey(nil, j.w.g, j.edge, "")))
		moved++
	}
	if moved == 0 {
		return nil
	}
	if err := b.Commit(false); err != nil {
		return fmt.Errorf("%w: drop expired buckets: %v", ErrUnavailable, err)
	}
	for _, j := range jobs {
		n.retentionEdges[j.ns+"\x00"+j.w.g.name] = max(n.retentionEdges[j.ns+"\x00"+j.w.g.name], j.edge)
	}
	n.metrics.bucketDrops.Add(float64(moved))
	return nil
}

// DropExpired runs retention, TTL and id expiry at once (they also run in
// the background); tests and operators use it.
func (n *Node) DropExpired(ctx context.Context) error {
	if err := n.dropExpiredBuckets(); err != nil {
		return err
	}
	if err := n.expireIdle(ctx); err != nil {
		return err
	}
	return n.expireIDs(ctx)
}

// expiryLoop drops expired buckets and idle counters in the background.
func (n *Node) expiryLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.ExpiryInterval)
	defer t.Stop()
	for pass := 1; ; pass++ {
		select {
		case <-n.done:
			return
		case <-t.C:
			if !n.Ready() {
				continue
			}
			err := n.dropExpiredBuckets()
			if err == nil {
				err = n.expireIdle(n.ctx())
			}
			if err == nil && pass%6 == 0 {
				// Id records are scanned less often: they are many,
				// and their windows are long.
				err = n.expireIDs(n.ctx())
			}
			if err != nil {
				n.log.Warn("expiry pass failed", zap.Error(err))
			}
		}
	}
}
