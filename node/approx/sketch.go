package approx

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
	"github.com/countmesh/countmesh/node/internal/nodeerr"
	"github.com/countmesh/countmesh/node/keyspace"
)

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
// MaxHeavyHitters.
const (
	minHeavyHitters = 1024
	MaxHeavyHitters = 8192
)

// HeavyHitterCapacity returns how many keys the heavy hitters of a sketch
// of p's dimensions track.
func HeavyHitterCapacity(p crdt.SketchParams) int {
	return min(max(int(math.Ceil(1/p.Epsilon)), minHeavyHitters), MaxHeavyHitters)
}

// Config holds what the sketches need from the node.
type Config struct {
	// ID is this node's slot.
	ID crdt.NodeID
	// Update applies fn, a change of this node's own slot, to the internal
	// counter ns/key (created when missing) under its stripe lock, and
	// queues it for the group commit; it reports whether the namespace asks
	// for sync durability.
	Update func(ns, key string, fn func(e *keyspace.Entry) error) (sync bool, err error)
	// CheckWritable refuses a write of ops counters while the node is
	// failed or overloaded.
	CheckWritable func(ops int) error
	// Read returns the value of ns/key, 0 for one never written.
	Read func(ns, key string) (int64, error)
	// Durable makes the changes made so far durable; with sync it waits
	// for the group commit's fsync.
	Durable func(ctx context.Context, sync bool) error
	// OnIncrement and OnRead count an increment and a read served.
	OnIncrement func()
	OnRead      func()
}

// Sketches holds the in-memory part of the approximate namespaces: their
// sketch layouts and heavy hitters. The cells themselves are internal
// counters of the hot set, reached through Config. It is safe for
// concurrent use.
type Sketches struct {
	cfg Config

	mu sync.RWMutex // guards m
	m  map[string]*sketch
}

// New returns the sketches of a node.
func New(cfg Config) *Sketches { return &Sketches{cfg: cfg} }

// sketch is one approximate namespace's sketch layout and heavy hitters.
type sketch struct {
	params   crdt.SketchParams
	prefix   string // of the cell keys
	totalKey string

	mu sync.Mutex         // guards hh
	hh *crdt.HeavyHitters // this node's increments
}

// sketchOf returns the sketch layout and heavy hitters of the approximate
// namespace ns of dimensions p, (re)made when its dimensions changed.
func (s *Sketches) sketchOf(ns string, p crdt.SketchParams) *sketch {
	s.mu.RLock()
	a := s.m[ns]
	s.mu.RUnlock()
	if a != nil && a.params == p {
		return a
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.m[ns]; a != nil && a.params == p {
		return a
	}
	if s.m == nil {
		s.m = make(map[string]*sketch)
	}
	prefix := sketchPrefix(p)
	a = &sketch{params: p, prefix: prefix, totalKey: prefix + string([]byte{sketchTotalRow}), hh: crdt.NewHeavyHitters(HeavyHitterCapacity(p))}
	s.m[ns] = a
	return a
}

// HeavyHitters returns how many keys the heavy hitters of ns track, and
// their capacity (0, 0 before ns's first increment here).
func (s *Sketches) HeavyHitters(ns string) (tracked, capacity int) {
	s.mu.RLock()
	a := s.m[ns]
	s.mu.RUnlock()
	if a == nil {
		return 0, 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hh.Len(), a.hh.Capacity()
}

// Refused is the error for an operation an approximate namespace cannot
// perform.
func Refused(ns, what string) error {
	return fmt.Errorf("%w: %q is an approximate namespace (a Count-Min Sketch, no counter per key): %s", nodeerr.ErrInvalidArgument, ns, what)
}

// Add counts by (positive) more occurrences of key in the approximate
// namespace ns of dimensions p, and returns the key's estimate after the
// change and whether the namespace asks for sync durability. It does not
// wait for durability (batches wait once for all their ops).
func (s *Sketches) Add(ns string, p crdt.SketchParams, key string, by int64) (int64, bool, error) {
	a := s.sketchOf(ns, p)
	// Refuse up front what the cell updates below would refuse one by one,
	// so that an increment is not left in some rows only.
	if err := s.cfg.CheckWritable(a.params.Depth + 1); err != nil {
		return 0, false, err
	}
	// The total first: every cell of this node's slot is at most the
	// total's, so when the total does not overflow, no cell does.
	sync, err := s.cfg.Update(ns, a.totalKey, func(e *keyspace.Entry) error {
		if v, err := e.C.Add(s.cfg.ID, by); err != nil {
			return fmt.Errorf("%w: the total of approximate namespace %q is %d; adding %d would leave the int64 range", nodeerr.ErrOverflow, ns, v, by)
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
		if _, err := s.cfg.Update(ns, string(ck), func(e *keyspace.Entry) error {
			v, err := e.C.Add(s.cfg.ID, by)
			if err != nil {
				return fmt.Errorf("%w: a sketch cell of %q is %d; adding %d would leave the int64 range", nodeerr.ErrOverflow, ns, v, by)
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
	return max(est, 0), sync, nil
}

// Estimate returns the sketch's estimate of key (the smallest of its cells,
// never below 0) and the error bound ⌈ε·total⌉.
func (s *Sketches) Estimate(ns string, p crdt.SketchParams, key string) (est, bound int64, err error) {
	return s.estimate(ns, s.sketchOf(ns, p), key)
}

func (s *Sketches) estimate(ns string, a *sketch, key string) (est, bound int64, err error) {
	total, err := s.cfg.Read(ns, a.totalKey)
	if err != nil {
		return 0, 0, err
	}
	var cols [64]uint32
	var buf [16]byte
	est = math.MaxInt64
	for r, col := range a.params.Columns(key, cols[:0]) {
		v, err := s.cfg.Read(ns, string(appendCellKey(buf[:0], a.prefix, r, col)))
		if err != nil {
			return 0, 0, err
		}
		est = min(est, v)
	}
	return max(est, 0), int64(a.params.Bound(uint64(max(total, 0)))), nil
}

// Estimated is one key's estimate in a ranking.
type Estimated struct {
	Key        string
	Value      int64
	ErrorBound int64
}

// Top returns the k keys of the approximate namespace ns with the largest
// estimates, among this node's heavy hitters whose key starts with prefix.
// The candidates are the keys heavy in this node's own increments since it
// started; their values are the mesh-wide estimates of the merged sketch,
// each with its error bound.
func (s *Sketches) Top(ns string, p crdt.SketchParams, k int, prefix string) ([]Estimated, error) {
	if k < 1 || k > MaxHeavyHitters {
		return nil, fmt.Errorf("%w: k must be 1 to %d, got %d", nodeerr.ErrInvalidArgument, MaxHeavyHitters, k)
	}
	a := s.sketchOf(ns, p)
	a.mu.Lock()
	keys := a.hh.Keys(nil)
	a.mu.Unlock()
	out := make([]Estimated, 0, len(keys))
	for _, key := range keys {
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		est, bound, err := s.estimate(ns, a, key)
		if err != nil {
			return nil, err
		}
		out = append(out, Estimated{Key: key, Value: est, ErrorBound: bound})
	}
	slices.SortFunc(out, func(x, y Estimated) int {
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
