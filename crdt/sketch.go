package crdt

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/countmesh/countmesh/internal/splitmix"
)

// Count-Min Sketch (Cormode and Muthukrishnan, 2005) with one slot per node,
// and Space-Saving heavy hitters (Metwally, Agrawal and El Abbadi, 2005).
//
// A sketch of width w and depth d is a d×w grid of cells. Adding by to key k
// adds by to the cell (r, h_r(k)) of every row r; the estimate of k is the
// smallest of its d cells. Every cell of k holds k's own count plus the
// counts of the keys that collide with it, so with non-negative updates the
// estimate never falls below the truth, and with w = ⌈e/ε⌉ and
// d = ⌈ln(1/δ)⌉ it exceeds the truth by more than ε·N (N the sum of all
// updates) with probability at most δ, for each key queried.
//
// Replicated, every cell is a per-node-slot counter: a node adds only to its
// own slot, slots merge by maximum, and a cell's value is the sum over
// slots. The merged grid is therefore exactly the sketch of the union of the
// nodes' streams, and the bound holds for it with N the mesh-wide total.
// CountMin is that CRDT as a value; package node stores each cell as an
// internal crdt.Counter instead, which merges the same way.

// Sketch limits.
const (
	// MaxSketchCells bounds w×d, so that one namespace's memory stays
	// bounded whatever epsilon and confidence it asks for.
	MaxSketchCells = 1_000_000
	// MaxSketchEpsilon is the loosest error bound accepted.
	MaxSketchEpsilon = 0.1
	// MinSketchConfidence is the lowest confidence accepted.
	MinSketchConfidence = 0.5
)

// ErrSketchParams is returned for an epsilon or confidence out of range.
var ErrSketchParams = errors.New("crdt: bad sketch parameters")

// SketchParams are the dimensions of a Count-Min Sketch, derived from its
// error bound and confidence.
type SketchParams struct {
	// Epsilon is the error bound as a fraction of the total count.
	Epsilon float64
	// Confidence is the probability, per key queried, that the estimate
	// is within Epsilon·total of the truth (1-δ).
	Confidence float64
	// Width is ⌈e/ε⌉, the cells per row.
	Width int
	// Depth is ⌈ln(1/δ)⌉, the rows.
	Depth int
}

// NewSketchParams returns the dimensions for error bound epsilon
// (0 < epsilon <= MaxSketchEpsilon) with the given confidence
// (MinSketchConfidence <= confidence < 1), refusing a sketch of more than
// MaxSketchCells cells.
func NewSketchParams(epsilon, confidence float64) (SketchParams, error) {
	if !(epsilon > 0 && epsilon <= MaxSketchEpsilon) {
		return SketchParams{}, fmt.Errorf("%w: epsilon must be > 0 and <= %g, got %g", ErrSketchParams, MaxSketchEpsilon, epsilon)
	}
	if !(confidence >= MinSketchConfidence && confidence < 1) {
		return SketchParams{}, fmt.Errorf("%w: confidence must be >= %g and < 1, got %g", ErrSketchParams, MinSketchConfidence, confidence)
	}
	w := math.Ceil(math.E / epsilon)
	d := math.Ceil(math.Log(1 / (1 - confidence)))
	if d < 1 {
		d = 1
	}
	if w*d > MaxSketchCells {
		return SketchParams{}, fmt.Errorf("%w: epsilon %g with confidence %g needs %g×%g = %g cells, more than %d; use a larger epsilon or a lower confidence",
			ErrSketchParams, epsilon, confidence, w, d, w*d, MaxSketchCells)
	}
	return SketchParams{Epsilon: epsilon, Confidence: confidence, Width: int(w), Depth: int(d)}, nil
}

// Cells returns w×d.
func (p SketchParams) Cells() int { return p.Width * p.Depth }

// Bound returns the error bound for a sketch holding total: ⌈ε·total⌉.
// With the stated confidence, an estimate is at most the truth plus Bound.
func (p SketchParams) Bound(total uint64) uint64 {
	return uint64(math.Ceil(p.Epsilon * float64(total)))
}

// Columns appends to dst the column of key in each row, row 0 first. The
// hash is xxHash64 (deterministic across processes and machines, which
// replication needs: every node must place a key in the same cells), and
// the d columns come from it by double hashing, h1 + r·h2 (Kirsch and
// Mitzenmacher), with h2 an independent remix of the hash, forced odd.
func (p SketchParams) Columns(key string, dst []uint32) []uint32 {
	h1 := xxhash.Sum64String(key)
	h2 := splitmix.Mix(h1^0x9e3779b97f4a7c15) | 1
	w := uint64(p.Width)
	for r := range p.Depth {
		dst = append(dst, uint32((h1+uint64(r)*h2)%w))
	}
	return dst
}

// CountMin is a Count-Min Sketch with one slot per node, a state-based
// CRDT: Add changes only the given node's slot, Merge takes the per-cell
// maximum within each slot, and a cell reads as the sum over slots. It also
// keeps each slot's total, so that the error bound can be stated. Not safe
// for concurrent use.
type CountMin struct {
	p     SketchParams
	slots map[NodeID]*cmSlot
}

type cmSlot struct {
	cells []uint64 // row-major, Depth×Width
	total uint64
}

// NewCountMin returns an empty sketch of the given dimensions.
func NewCountMin(p SketchParams) *CountMin {
	return &CountMin{p: p, slots: make(map[NodeID]*cmSlot)}
}

// Params returns the sketch's dimensions.
func (s *CountMin) Params() SketchParams { return s.p }

func (s *CountMin) slot(node NodeID) *cmSlot {
	sl := s.slots[node]
	if sl == nil {
		sl = &cmSlot{cells: make([]uint64, s.p.Cells())}
		s.slots[node] = sl
	}
	return sl
}

// Add counts by more occurrences of key in node's slot. It refuses, changing
// nothing, an update that would overflow the slot's total.
func (s *CountMin) Add(node NodeID, key string, by uint64) error {
	sl := s.slot(node)
	if sl.total > math.MaxUint64-by {
		return ErrOverflow
	}
	sl.total += by
	var buf [64]uint32
	for r, col := range s.p.Columns(key, buf[:0]) {
		sl.cells[r*s.p.Width+int(col)] += by // <= total: cannot overflow
	}
	return nil
}

// Estimate returns the estimated count of key: the smallest of its cells,
// each summed over the slots. It is never below the true count.
func (s *CountMin) Estimate(key string) uint64 {
	var buf [64]uint32
	est := uint64(math.MaxUint64)
	for r, col := range s.p.Columns(key, buf[:0]) {
		var v uint64
		for _, sl := range s.slots {
			v += sl.cells[r*s.p.Width+int(col)]
		}
		est = min(est, v)
	}
	if est == math.MaxUint64 { // no rows: cannot happen with valid params
		return 0
	}
	return est
}

// Total returns the sum of every update merged into the sketch.
func (s *CountMin) Total() uint64 {
	var t uint64
	for _, sl := range s.slots {
		t += sl.total
	}
	return t
}

// Merge joins other into s: per slot, per cell, the maximum. Sketches of
// different dimensions cannot merge.
func (s *CountMin) Merge(other *CountMin) error {
	if s.p.Width != other.p.Width || s.p.Depth != other.p.Depth {
		return fmt.Errorf("%w: cannot merge a %d×%d sketch into a %d×%d one", ErrSketchParams, other.p.Depth, other.p.Width, s.p.Depth, s.p.Width)
	}
	for node, o := range other.slots {
		sl := s.slot(node)
		for i, v := range o.cells {
			sl.cells[i] = max(sl.cells[i], v)
		}
		sl.total = max(sl.total, o.total)
	}
	return nil
}

// Clone returns a deep copy of s.
func (s *CountMin) Clone() *CountMin {
	out := NewCountMin(s.p)
	for node, sl := range s.slots {
		out.slots[node] = &cmSlot{cells: slices.Clone(sl.cells), total: sl.total}
	}
	return out
}

// Equal reports whether s and other hold the same state (a slot of zeros
// equals an absent one).
func (s *CountMin) Equal(other *CountMin) bool {
	if s.p.Width != other.p.Width || s.p.Depth != other.p.Depth {
		return false
	}
	zero := &cmSlot{cells: make([]uint64, s.p.Cells())}
	get := func(c *CountMin, n NodeID) *cmSlot {
		if sl := c.slots[n]; sl != nil {
			return sl
		}
		return zero
	}
	for _, pair := range [][2]*CountMin{{s, other}, {other, s}} {
		for node := range pair[0].slots {
			a, b := get(pair[0], node), get(pair[1], node)
			if a.total != b.total || !slices.Equal(a.cells, b.cells) {
				return false
			}
		}
	}
	return true
}

// HeavyHitter is one key tracked by HeavyHitters.
type HeavyHitter struct {
	Key string
	// Count is an upper bound on the key's count in the stream offered;
	// Count-Err is a lower bound.
	Count uint64
	Err   uint64
}

// HeavyHitters is the Space-Saving summary of a stream of weighted keys: it
// tracks at most Capacity keys, and
//   - every key whose count exceeds N/Capacity (N the total weight offered)
//     is tracked;
//   - a tracked key's true count lies in [Count-Err, Count];
//   - the Counts sum to N.
//
// Offer costs O(log Capacity). Not safe for concurrent use.
type HeavyHitters struct {
	capacity int
	total    uint64
	heap     []HeavyHitter  // min-heap on Count (ties: larger key first out)
	pos      map[string]int // key -> index in heap
}

// NewHeavyHitters returns an empty summary tracking at most capacity keys
// (at least 1).
func NewHeavyHitters(capacity int) *HeavyHitters {
	capacity = max(capacity, 1)
	return &HeavyHitters{capacity: capacity, pos: make(map[string]int, capacity)}
}

// Capacity returns the most keys tracked at once.
func (h *HeavyHitters) Capacity() int { return h.capacity }

// Len returns the number of keys tracked.
func (h *HeavyHitters) Len() int { return len(h.heap) }

// Total returns the total weight offered (saturating at the uint64 range).
func (h *HeavyHitters) Total() uint64 { return h.total }

// Offer counts by more occurrences of key. When key is not tracked and the
// summary is full, key replaces the key with the smallest count and inherits
// that count as its error.
func (h *HeavyHitters) Offer(key string, by uint64) {
	h.total = satAdd(h.total, by)
	if i, ok := h.pos[key]; ok {
		h.heap[i].Count = satAdd(h.heap[i].Count, by)
		h.down(i)
		return
	}
	if len(h.heap) < h.capacity {
		h.heap = append(h.heap, HeavyHitter{Key: key, Count: by})
		h.pos[key] = len(h.heap) - 1
		h.up(len(h.heap) - 1)
		return
	}
	m := &h.heap[0]
	delete(h.pos, m.Key)
	*m = HeavyHitter{Key: key, Count: satAdd(m.Count, by), Err: m.Count}
	h.pos[key] = 0
	h.down(0)
}

// Items returns the tracked keys, largest Count first (ties by key).
func (h *HeavyHitters) Items() []HeavyHitter {
	out := slices.Clone(h.heap)
	slices.SortFunc(out, func(a, b HeavyHitter) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	return out
}

// Keys appends the tracked keys to dst, in no particular order.
func (h *HeavyHitters) Keys(dst []string) []string {
	for _, it := range h.heap {
		dst = append(dst, it.Key)
	}
	return dst
}

func satAdd(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

// less orders the heap: smaller count first; among equal counts, the larger
// key leaves first, so that the summary is deterministic.
func (h *HeavyHitters) less(i, j int) bool {
	a, b := &h.heap[i], &h.heap[j]
	if a.Count != b.Count {
		return a.Count < b.Count
	}
	return a.Key > b.Key
}

func (h *HeavyHitters) swap(i, j int) {
	h.heap[i], h.heap[j] = h.heap[j], h.heap[i]
	h.pos[h.heap[i].Key] = i
	h.pos[h.heap[j].Key] = j
}

func (h *HeavyHitters) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h *HeavyHitters) down(i int) {
	n := len(h.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && h.less(r, l) {
			c = r
		}
		if !h.less(c, i) {
			return
		}
		h.swap(i, c)
		i = c
	}
}
