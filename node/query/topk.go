package query

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/internal/nodeerr"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/node/series"
)

// Top-K. For each namespace that has been asked for its top counters, the
// node keeps the topCap largest counters (of all time, and of the current
// bucket of each window asked for) in memory and updates them on every
// change, local or replicated, so that a query sorts at most topCap entries
// and never scans the namespace.
//
// A counter outside the set has a value of at most ceiling: every value seen
// of a counter that was not admitted, or that was pushed out, raises it. The
// first k of the set are the true top k when the k-th is >= ceiling; that is
// always so while counters only grow, and can stop being so when a counter of
// the set shrinks (a decrement, a reset, a delete). Then the answer is marked
// inexact and the set is rebuilt from a scan, at most once per
// topRebuildEvery.

// topCap is how many counters a top set keeps; a query asks for at most
// MaxTopK.
const (
	topCap          = 1024
	MaxTopK         = 1000
	topRebuildEvery = 30 * time.Second
)

type topItem struct {
	key string
	val int64
	idx int
}

// topHeap is a min-heap of topItems by value.
type topHeap []*topItem

func (h topHeap) Len() int           { return len(h) }
func (h topHeap) Less(i, j int) bool { return h[i].val < h[j].val }
func (h topHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *topHeap) Push(x any) {
	it := x.(*topItem)
	it.idx = len(*h)
	*h = append(*h, it)
}
func (h *topHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// topSet is the top counters of one namespace (or of one bucket of it).
type topSet struct {
	start int64 // bucket start, for a window's set

	mu    sync.Mutex // guards items, heap, building, touched and rebuilt
	items map[string]*topItem
	heap  topHeap
	// building is set while the set is filled from a scan; touched holds
	// the keys changed since, whose values the scan must not overwrite.
	building bool
	touched  map[string]struct{}
	built    chan struct{} // closed when the first fill is done
	rebuilt  time.Time

	// floor is the smallest value in the set while it is full, and
	// MinInt64 before: a counter below it that did not shrink is not in
	// the set. ceiling bounds the values of counters outside the set.
	floor   atomic.Int64
	ceiling atomic.Int64
}

func newTopSet(start int64) *topSet {
	t := &topSet{start: start, items: make(map[string]*topItem), built: make(chan struct{}), building: true, touched: make(map[string]struct{})}
	t.floor.Store(math.MinInt64)
	t.ceiling.Store(math.MinInt64)
	return t
}

// observe records that key changed from before to after (live false: it was
// deleted). Callers hold the counter's stripe lock, so one key's changes
// arrive in order.
func (t *topSet) observe(key string, before, after int64, live bool) {
	if live && after >= before && after < t.floor.Load() {
		t.raiseCeiling(after) // not a member (members are >= floor), not admitted
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.building {
		t.touched[key] = struct{}{}
	}
	t.offerLocked(key, after, live)
}

// offerLocked updates the set with the value of key.
func (t *topSet) offerLocked(key string, val int64, live bool) {
	if it := t.items[key]; it != nil {
		if !live {
			heap.Remove(&t.heap, it.idx)
			delete(t.items, key)
		} else {
			it.val = val
			heap.Fix(&t.heap, it.idx)
		}
	} else if live {
		switch {
		case len(t.heap) < topCap:
			it := &topItem{key: key, val: val}
			heap.Push(&t.heap, it)
			t.items[key] = it
		case val > t.heap[0].val:
			out := heap.Pop(&t.heap).(*topItem)
			delete(t.items, out.key)
			t.raiseCeiling(out.val)
			it := &topItem{key: key, val: val}
			heap.Push(&t.heap, it)
			t.items[key] = it
		default:
			t.raiseCeiling(val)
		}
	}
	if len(t.heap) == topCap {
		t.floor.Store(t.heap[0].val)
	} else {
		t.floor.Store(math.MinInt64)
	}
}

func (t *topSet) raiseCeiling(v int64) {
	for {
		c := t.ceiling.Load()
		if v <= c || t.ceiling.CompareAndSwap(c, v) {
			return
		}
	}
}

// top returns the k largest members under prefix (ties by key), and whether
// they are certainly the true top k.
func (t *topSet) top(k int, prefix string) ([]Item, bool) {
	t.mu.Lock()
	items := make([]topItem, 0, min(k*4, len(t.heap)))
	for _, it := range t.heap {
		if strings.HasPrefix(it.key, prefix) {
			items = append(items, *it)
		}
	}
	t.mu.Unlock()
	slices.SortFunc(items, func(a, b topItem) int {
		if c := cmp.Compare(b.val, a.val); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	ceiling := t.ceiling.Load()
	exact := ceiling == math.MinInt64 // nothing was ever left out
	if len(items) >= k {
		items = items[:k]
		// Strictly above: a counter left out at the ceiling's value could
		// tie with the k-th.
		exact = exact || (k > 0 && items[k-1].val > ceiling)
		if k == 0 {
			exact = true
		}
	}
	out := make([]Item, len(items))
	for i, it := range items {
		out[i] = Item{Key: it.key, Value: it.val}
	}
	return out, exact
}

// nsTops are the top sets of one namespace: all time, and the current
// bucket of each window.
type nsTops struct {
	total   atomic.Pointer[topSet]
	windows [6]atomic.Pointer[topSet] // by granularity index
}

// Item is one counter of a ranking.
type Item struct {
	Key   string
	Value int64
}

// Config holds what the queries need from the node.
type Config struct {
	Now  func() time.Time
	Log  *zap.Logger
	Done <-chan struct{} // closed when the node closes: fills stop
	// Scan calls fn, in key order, for every counter of ns whose key
	// starts with prefix and sorts after `after`, with its freshest value,
	// until fn returns false (keyspace.Set.Scan). live is false for a
	// deleted counter or one idle past its namespace's ttl.
	Scan func(ns, prefix, after string, fn func(key string, value int64, live bool) bool) error
	// Windows returns the windows ns keeps, or an error when it keeps none
	// (series.Windows.Kept).
	Windows func(ns string) ([]series.Window, error)
	// Exists reports whether the namespace ns exists.
	Exists func(ns string) bool
}

// TopSets keeps, per namespace asked for its top, the top sets of all time
// and of each window's current bucket. It is safe for concurrent use.
type TopSets struct {
	cfg  Config
	sets sync.Map    // namespace -> *nsTops, for namespaces asked for their top
	any  atomic.Bool // sets is not empty
}

// NewTopSets returns empty top sets.
func NewTopSets(cfg Config) *TopSets { return &TopSets{cfg: cfg} }

// topsFor returns the namespace's top sets, creating them when create.
func (q *TopSets) topsFor(ns string, create bool) *nsTops {
	if v, ok := q.sets.Load(ns); ok {
		return v.(*nsTops)
	}
	if !create {
		return nil
	}
	v, _ := q.sets.LoadOrStore(ns, new(nsTops))
	q.any.Store(true)
	return v.(*nsTops)
}

// Active reports whether any namespace has top sets to feed: a writer that
// sees false need not call Observe.
func (q *TopSets) Active() bool { return q.any.Load() }

// Observe feeds a change of ns/key from before to after (live false: it is
// deleted or idle) to the namespace's top sets, if any. The caller holds the
// counter's stripe lock, so one key's changes arrive in order.
func (q *TopSets) Observe(ns, key string, before, after int64, live bool) {
	tops := q.topsFor(ns, false)
	if tops == nil {
		return
	}
	if !keyspace.IsInternal(key) {
		if t := tops.total.Load(); t != nil {
			t.observe(key, before, after, live)
		}
		return
	}
	g, start, sk, ok := series.ParseBucketKey(key)
	if !ok || keyspace.IsInternal(sk) {
		return
	}
	if t := tops.windows[g.Idx].Load(); t != nil && t.start == start {
		t.observe(sk, before, after, live)
	}
}

// TopResult is the answer to Top.
type TopResult struct {
	Items []Item
	Exact bool
	// Window and BucketStart name the bucket ranked, for a windowed query.
	Window      string
	BucketStart time.Time
}

// Top returns the k largest counters of ns whose key starts with prefix, of
// all time or, with window, of the window's current bucket. The caller has
// checked ns and k.
func (q *TopSets) Top(ctx context.Context, ns string, k int, windowName, prefix string) (TopResult, error) {
	var w series.Window
	var out TopResult
	if windowName != "" {
		ws, err := q.cfg.Windows(ns)
		if err != nil {
			return TopResult{}, err
		}
		var ok bool
		if w, ok = series.Find(ws, windowName); !ok {
			return TopResult{}, fmt.Errorf("%w: namespace %q does not keep window %q", nodeerr.ErrInvalidArgument, ns, windowName)
		}
	}
	if !q.cfg.Exists(ns) {
		return TopResult{Items: []Item{}, Exact: true}, nil
	}
	tops := q.topsFor(ns, true)
	var t *topSet
	if windowName == "" {
		t = tops.total.Load()
		if t == nil {
			nt := newTopSet(0)
			if tops.total.CompareAndSwap(nil, nt) {
				go q.fillTop(nt, ns, "")
			}
			t = tops.total.Load()
		}
	} else {
		start := w.Start(q.cfg.Now().Unix())
		out.Window, out.BucketStart = w.G.Name, time.Unix(start, 0).UTC()
		slot := &tops.windows[w.G.Idx]
		for {
			t = slot.Load()
			if t != nil && t.start >= start {
				break
			}
			nt := newTopSet(start)
			if slot.CompareAndSwap(t, nt) {
				go q.fillTop(nt, ns, string(series.BucketKey(nil, w.G, start, "")))
				t = nt
				break
			}
		}
	}
	select {
	case <-t.built:
	case <-ctx.Done():
		return TopResult{}, ctx.Err()
	}
	items, exact := t.top(k, prefix)
	if !exact && prefix != "" && windowName == "" {
		// A prefix's counters outside the set: rank the prefix itself.
		var err error
		if items, err = q.scanTop(ctx, ns, prefix, k); err != nil {
			return TopResult{}, err
		}
		exact = true
	} else if !exact {
		t.mu.Lock()
		stale := time.Since(t.rebuilt) > topRebuildEvery && !t.building
		t.mu.Unlock()
		if stale {
			q.rebuildTop(tops, t, ns, w, windowName != "")
		}
	}
	out.Items, out.Exact = items, exact
	return out, nil
}

// rebuildTop replaces an inexact set with a fresh one filled from a scan.
func (q *TopSets) rebuildTop(tops *nsTops, old *topSet, ns string, w series.Window, windowed bool) {
	nt := newTopSet(old.start)
	if !windowed {
		if tops.total.CompareAndSwap(old, nt) {
			go q.fillTop(nt, ns, "")
		}
		return
	}
	if tops.windows[w.G.Idx].CompareAndSwap(old, nt) {
		go q.fillTop(nt, ns, string(series.BucketKey(nil, w.G, old.start, "")))
	}
}

// fillTop fills a new set from a scan of ns (bucketPrefix empty: the user
// counters; else the counters of one bucket). The set is installed before
// the scan, so changes during it are observed; the scan sees every change
// before it (Config.Scan).
func (q *TopSets) fillTop(t *topSet, ns, bucketPrefix string) {
	defer func() {
		t.mu.Lock()
		t.building, t.touched, t.rebuilt = false, nil, time.Now()
		t.mu.Unlock()
		close(t.built)
	}()
	prefix, after := bucketPrefix, ""
	if prefix == "" {
		after = keyspace.FirstUserKey
	}
	err := q.cfg.Scan(ns, prefix, after, func(key string, value int64, live bool) bool {
		user := key
		if bucketPrefix != "" {
			user = key[len(bucketPrefix):]
			if keyspace.IsInternal(user) {
				return true
			}
		}
		t.mu.Lock()
		if _, seen := t.touched[user]; !seen {
			t.offerLocked(user, value, live)
		}
		t.mu.Unlock()
		select {
		case <-q.cfg.Done:
			return false
		default:
			return true
		}
	})
	if err != nil {
		q.cfg.Log.Warn("top-k: the scan that fills the set failed; it may miss counters until it is rebuilt", zap.String("ns", ns), zap.Error(err))
	}
}

// scanTop ranks the counters under prefix by scanning them.
func (q *TopSets) scanTop(ctx context.Context, ns, prefix string, k int) ([]Item, error) {
	t := newTopSet(0)
	err := q.cfg.Scan(ns, prefix, keyspace.FirstUserKey, func(key string, value int64, live bool) bool {
		t.offerLocked(key, value, live)
		return ctx.Err() == nil
	})
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return nil, kinderr.New(nodeerr.ErrUnavailable, err, "scan counters: %v", err)
	}
	items, _ := t.top(k, prefix)
	return items, nil
}
