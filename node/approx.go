package node

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/keyspace"
)

// Approximate namespaces (docs/approximate.md). A namespace of type
// approximate keeps no counter per key: it keeps one Count-Min Sketch of
// w×d cells, and each cell is an internal counter (keyspace.KindSketch) with one slot
// per node, stored, group-committed, replicated and repaired exactly like a
// user's counter. An increment of key k by `by` adds `by` to this node's slot
// of the d cells (r, h_r(k)) and of the namespace's total; a read is the
// smallest of k's d cells, with the error bound ⌈ε·total⌉. Merging the cells
// (per-slot maximum, sum over slots) yields the sketch of the union of every
// node's increments, so replication and partitions behave as they do for
// the exact types, and the memory of a namespace is w×d+1 counters whatever
// the number of keys.
//
// Top-K comes from a Space-Saving summary per namespace, in memory, fed by
// this node's own increments: it names the candidate keys (those heavy in
// what this node counted), and their counts are read from the merged,
// mesh-wide sketch.

// Cell keys. A sketch's cells are
//
//	keyspace.KindSketch, width (4 bytes, big endian), depth (1 byte), row (1 byte), column (4 bytes, big endian)
//
// and its total is keyspace.KindSketch, width, depth, 0xff. The dimensions are part
// of the key, so that a namespace whose epsilon or confidence changes starts
// a new sketch instead of reading the old cells under another placement.
const (
	sketchPrefixLen = 1 + 4 + 1
	sketchTotalRow  = 0xff
)

// sketchPrefix returns the key prefix of the cells of a sketch of p's
// dimensions.
func sketchPrefix(p crdt.SketchParams) string {
	b := make([]byte, 0, sketchPrefixLen)
	b = append(b, keyspace.KindSketch)
	b = binary.BigEndian.AppendUint32(b, uint32(p.Width))
	b = append(b, byte(p.Depth))
	return string(b)
}

// appendCellKey appends the key of cell (row, col) to buf.
func appendCellKey(buf []byte, prefix string, row int, col uint32) []byte {
	buf = append(buf, prefix...)
	buf = append(buf, byte(row))
	return binary.BigEndian.AppendUint32(buf, col)
}

// Heavy hitters kept per approximate namespace: ⌈1/ε⌉ keys (so that every
// key holding more than ε of this node's increments is a candidate for
// top-K), at least enough for the largest top-K query and at most
// maxHeavyHitters.
const (
	minHeavyHitters = 1024
	maxHeavyHitters = 8192
)

func heavyHitterCapacity(p crdt.SketchParams) int {
	return min(max(int(math.Ceil(1/p.Epsilon)), minHeavyHitters), maxHeavyHitters)
}

// approxSet holds the in-memory part of the approximate namespaces: their
// sketch dimensions and heavy hitters.
type approxSet struct {
	mu sync.RWMutex // guards m
	m  map[string]*approxNS
}

// approxNS is one approximate namespace's sketch layout and heavy hitters.
type approxNS struct {
	params   crdt.SketchParams
	prefix   string // of the cell keys
	totalKey string

	mu sync.Mutex         // guards hh
	hh *crdt.HeavyHitters // this node's increments
}

// sketchParams returns the sketch dimensions of an approximate namespace's
// config; zero epsilon or confidence (a config stored before they existed)
// reads as the default.
func (cfg NamespaceConfig) sketchParams() (crdt.SketchParams, error) {
	eps, conf := cfg.Epsilon, cfg.Confidence
	if eps == 0 {
		eps = DefaultEpsilon
	}
	if conf == 0 {
		conf = DefaultConfidence
	}
	return crdt.NewSketchParams(eps, conf)
}

// normalizeApprox validates and completes the sketch fields of cfg (see
// NamespaceConfig.normalize): an approximate namespace gets the default
// epsilon and confidence when they are not given, and refuses the options a
// sketch cannot honour; other types refuse epsilon and confidence.
func (cfg *NamespaceConfig) normalizeApprox() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidArgument}, args...)...)
	}
	if cfg.Type != TypeApproximate {
		if cfg.Epsilon != 0 || cfg.Confidence != 0 {
			return bad("epsilon and confidence apply to approximate namespaces only; set \"type\": \"approximate\" or leave them out")
		}
		return nil
	}
	p, err := cfg.sketchParams()
	if err != nil {
		return bad("%s", strings.TrimPrefix(err.Error(), crdt.ErrSketchParams.Error()+": "))
	}
	cfg.Epsilon, cfg.Confidence = p.Epsilon, p.Confidence
	switch {
	case len(cfg.Windows) > 0:
		return bad("an approximate namespace keeps no time windows (its sketch has no per-key history); leave windows out or use an eventual namespace")
	case cfg.TTL != "" && cfg.TTL != "0":
		return bad("an approximate namespace has no per-key ttl (its sketch holds no per-key counters); set ttl to \"0\"")
	case cfg.Min != nil || cfg.Max != nil:
		return bad("an approximate namespace cannot enforce min or max on estimates; leave them null")
	}
	return nil
}

// namespaceIfExists returns the record of ns, or nil when ns does not exist
// (it does not create it).
func (n *Node) namespaceIfExists(ns string) *namespaceRecord {
	n.ns.RLock()
	defer n.ns.RUnlock()
	return n.ns.m[ns]
}

// approxNamespace returns the record of ns when ns exists and is
// approximate, else nil.
func (n *Node) approxNamespace(ns string) *namespaceRecord {
	if rec := n.namespaceIfExists(ns); rec != nil && rec.counterType().sketch() {
		return rec
	}
	return nil
}

// approxFor returns the sketch layout and heavy hitters of the approximate
// namespace ns with config rec, (re)made when its dimensions changed.
func (n *Node) approxFor(ns string, rec *namespaceRecord) (*approxNS, error) {
	p, err := rec.Config.sketchParams()
	if err != nil {
		return nil, kinderr.New(ErrInvalidArgument, err, "namespace %q: %v", ns, err)
	}
	n.approx.mu.RLock()
	a := n.approx.m[ns]
	n.approx.mu.RUnlock()
	if a != nil && a.params == p {
		return a, nil
	}
	n.approx.mu.Lock()
	defer n.approx.mu.Unlock()
	if a := n.approx.m[ns]; a != nil && a.params == p {
		return a, nil
	}
	if n.approx.m == nil {
		n.approx.m = make(map[string]*approxNS)
	}
	prefix := sketchPrefix(p)
	a = &approxNS{params: p, prefix: prefix, totalKey: prefix + "\xff", hh: crdt.NewHeavyHitters(heavyHitterCapacity(p))}
	n.approx.m[ns] = a
	return a, nil
}

// errApproxRefused is the error for an operation an approximate namespace
// cannot perform.
func errApproxRefused(ns, what string) error {
	return fmt.Errorf("%w: %q is an approximate namespace (a Count-Min Sketch, no counter per key): %s", ErrInvalidArgument, ns, what)
}

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
	if by == 0 {
		a, err := n.approxFor(ns, rec)
		if err != nil {
			return Result{}, err
		}
		est, _, err := n.estimate(ns, a, key)
		return Result{Value: est}, err
	}
	est, sync, err := n.addApprox(rec, ns, key, by)
	if err != nil {
		return Result{}, err
	}
	return Result{Value: est}, n.durable(ctx, sync)
}

// addApprox is incrApprox's change, without waiting for durability (batches
// wait once for all their ops). by must be positive.
func (n *Node) addApprox(rec *namespaceRecord, ns, key string, by int64) (int64, bool, error) {
	a, err := n.approxFor(ns, rec)
	if err != nil {
		return 0, false, err
	}
	// Refuse up front what the cell updates below would refuse one by one,
	// so that an increment is not left in some rows only.
	if err := n.checkWritable(a.params.Depth + 1); err != nil {
		return 0, false, err
	}
	// The total first: every cell of this node's slot is at most the
	// total's, so when the total does not overflow, no cell does.
	sync, err := n.update(ns, a.totalKey, true, func(e *keyspace.Entry) error {
		if v, err := e.C.Add(n.id, by); err != nil {
			return fmt.Errorf("%w: the total of approximate namespace %q is %d; adding %d would leave the int64 range", ErrOverflow, ns, v, by)
		}
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	var cols [64]uint32
	var buf [16]byte
	est := int64(math.MaxInt64)
	for r, col := range a.params.Columns(key, cols[:0]) {
		ck := appendCellKey(buf[:0], a.prefix, r, col)
		if _, err := n.update(ns, string(ck), true, func(e *keyspace.Entry) error {
			v, err := e.C.Add(n.id, by)
			if err != nil {
				return fmt.Errorf("%w: a sketch cell of %q is %d; adding %d would leave the int64 range", ErrOverflow, ns, v, by)
			}
			est = min(est, v)
			return nil
		}); err != nil {
			return 0, false, err
		}
	}
	a.mu.Lock()
	a.hh.Offer(key, uint64(by))
	a.mu.Unlock()
	n.metrics.increments.Inc()
	return max(est, 0), sync, nil
}

// getApprox reads the estimate of key in the approximate namespace ns.
func (n *Node) getApprox(ctx context.Context, rec *namespaceRecord, ns, key string, opts ReadOptions) (Counter, error) {
	if !opts.At.IsZero() {
		return Counter{}, errApproxRefused(ns, "it keeps no history, so it cannot be read at a time; leave at out")
	}
	if opts.Consistency != "" && opts.Consistency != "local" {
		return Counter{}, errApproxRefused(ns, "only consistency local is served there (quorum over the sketch's cells is not built); leave consistency out")
	}
	a, err := n.approxFor(ns, rec)
	if err != nil {
		return Counter{}, err
	}
	est, bound, err := n.estimate(ns, a, key)
	if err != nil {
		return Counter{}, err
	}
	n.metrics.reads.Inc()
	return Counter{NS: ns, Key: key, Value: est, Estimate: true, ErrorBound: bound}, nil
}

// estimate returns the sketch's estimate of key (the smallest of its cells,
// never below 0) and the error bound ⌈ε·total⌉.
func (n *Node) estimate(ns string, a *approxNS, key string) (est, bound int64, err error) {
	total, err := n.cellValue(ns, a.totalKey)
	if err != nil {
		return 0, 0, err
	}
	var cols [64]uint32
	var buf [16]byte
	est = math.MaxInt64
	for r, col := range a.params.Columns(key, cols[:0]) {
		v, err := n.cellValue(ns, string(appendCellKey(buf[:0], a.prefix, r, col)))
		if err != nil {
			return 0, 0, err
		}
		est = min(est, v)
	}
	return max(est, 0), int64(a.params.Bound(uint64(max(total, 0)))), nil
}

// cellValue reads an internal counter of ns; one never written reads 0.
func (n *Node) cellValue(ns, key string) (int64, error) {
	v, _, err := n.readValue(ns, key)
	return v, err
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
	if k < 1 || k > maxHeavyHitters {
		return nil, fmt.Errorf("%w: k must be 1 to %d, got %d", ErrInvalidArgument, maxHeavyHitters, k)
	}
	rec := n.approxNamespace(ns)
	if rec == nil {
		return nil, fmt.Errorf("%w: %q is not an approximate namespace", ErrInvalidArgument, ns)
	}
	a, err := n.approxFor(ns, rec)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	keys := a.hh.Keys(nil)
	a.mu.Unlock()
	out := make([]Counter, 0, len(keys))
	for _, key := range keys {
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		est, bound, err := n.estimate(ns, a, key)
		if err != nil {
			return nil, err
		}
		out = append(out, Counter{NS: ns, Key: key, Value: est, Estimate: true, ErrorBound: bound})
	}
	slices.SortFunc(out, func(x, y Counter) int {
		if c := cmp.Compare(y.Value, x.Value); c != 0 {
			return c
		}
		return cmp.Compare(x.Key, y.Key)
	})
	if len(out) > k {
		out = out[:k]
	}
	return out, nil
}
