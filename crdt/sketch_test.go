package crdt_test

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/countmesh/countmesh/crdt"
)

func TestNewSketchParams(t *testing.T) {
	for _, c := range []struct {
		name             string
		eps, conf        float64
		width, depth     int
		wantErr          bool
		boundOfTenMillon uint64
	}{
		// w = ⌈e/ε⌉, d = ⌈ln(1/(1-confidence))⌉.
		{name: "defaults", eps: 0.001, conf: 0.99, width: 2719, depth: 5, boundOfTenMillon: 10_000},
		{name: "loosest", eps: 0.1, conf: 0.5, width: 28, depth: 1, boundOfTenMillon: 1_000_000},
		{name: "tight", eps: 0.0001, conf: 0.999, width: 27183, depth: 7, boundOfTenMillon: 1_000},
		{name: "epsilon zero", eps: 0, conf: 0.99, wantErr: true},
		{name: "epsilon negative", eps: -0.01, conf: 0.99, wantErr: true},
		{name: "epsilon too loose", eps: 0.2, conf: 0.99, wantErr: true},
		{name: "epsilon NaN", eps: math.NaN(), conf: 0.99, wantErr: true},
		{name: "confidence one", eps: 0.01, conf: 1, wantErr: true},
		{name: "confidence too low", eps: 0.01, conf: 0.4, wantErr: true},
		{name: "confidence NaN", eps: 0.01, conf: math.NaN(), wantErr: true},
		// 2,718,282 columns: over the cell limit even with one row.
		{name: "too many cells", eps: 0.000001, conf: 0.6, wantErr: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := crdt.NewSketchParams(c.eps, c.conf)
			if c.wantErr {
				if !errors.Is(err, crdt.ErrSketchParams) {
					t.Fatalf("NewSketchParams(%g, %g) = %+v, %v; want ErrSketchParams", c.eps, c.conf, p, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Width != c.width || p.Depth != c.depth {
				t.Fatalf("dimensions %d×%d, want %d×%d", p.Depth, p.Width, c.depth, c.width)
			}
			if p.Cells() > crdt.MaxSketchCells {
				t.Fatalf("%d cells, over the limit", p.Cells())
			}
			if got := p.Bound(10_000_000); got != c.boundOfTenMillon {
				t.Fatalf("Bound(10M) = %d, want %d", got, c.boundOfTenMillon)
			}
		})
	}
}

// The placement of a key is part of the replicated state: every node, every
// process and every version must put a key in the same cells. These columns
// pin it; if they change, stored sketches stop meaning what they meant.
func TestColumnsAreStable(t *testing.T) {
	p, err := crdt.NewSketchParams(0.001, 0.99)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key  string
		want []uint32
	}{
		{"page/1", []uint32{1147, 2421, 452, 1726, 2476}},
		{"/index.html", []uint32{33, 432, 831, 706, 1105}},
	} {
		if got := p.Columns(c.key, nil); !slices.Equal(got, c.want) {
			t.Errorf("Columns(%q) = %v, want %v", c.key, got, c.want)
		}
	}
}

// Keys spread evenly over each row: no column gets far more than its share.
func TestColumnsSpread(t *testing.T) {
	p, err := crdt.NewSketchParams(0.01, 0.99) // 272 columns
	if err != nil {
		t.Fatal(err)
	}
	const keys = 272 * 200
	hist := make([][]int, p.Depth)
	for r := range hist {
		hist[r] = make([]int, p.Width)
	}
	var cols []uint32
	for i := range keys {
		cols = p.Columns(fmt.Sprintf("user:%d", i), cols[:0])
		if len(cols) != p.Depth {
			t.Fatalf("%d columns for %d rows", len(cols), p.Depth)
		}
		for r, c := range cols {
			if int(c) >= p.Width {
				t.Fatalf("column %d outside width %d", c, p.Width)
			}
			hist[r][c]++
		}
	}
	// 200 expected per column, standard deviation ~14: 6 sigma either way.
	for r := range hist {
		lo, hi := slices.Min(hist[r]), slices.Max(hist[r])
		if lo < 115 || hi > 285 {
			t.Errorf("row %d: columns hold %d to %d keys, want about 200 each", r, lo, hi)
		}
	}
	// Rows are not copies of each other: two keys that share a column in
	// row 0 rarely share one in row 1.
	same := 0
	for i := range 1000 {
		a := p.Columns(fmt.Sprintf("a%d", i), nil)
		for j := 0; j < 1000; j++ {
			b := p.Columns(fmt.Sprintf("b%d", j), nil)
			if a[0] == b[0] && a[1] == b[1] {
				same++
			}
		}
	}
	// Expected 1e6/272² ≈ 13.5 pairs; a row copy would give ~3,700.
	if same > 60 {
		t.Errorf("%d of 1e6 pairs share both row 0 and row 1 columns, want about 14", same)
	}
}

// streamOp is one update of a sketch property: node adds by to key.
type streamOp struct {
	node crdt.NodeID
	key  string
	by   uint64
}

func genParams(t *rapid.T) crdt.SketchParams {
	eps := rapid.SampledFrom([]float64{0.1, 0.05, 0.02, 0.01}).Draw(t, "epsilon")
	conf := rapid.SampledFrom([]float64{0.5, 0.9, 0.99}).Draw(t, "confidence")
	p, err := crdt.NewSketchParams(eps, conf)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func genStream(t *rapid.T, nodes int) []streamOp {
	universe := rapid.IntRange(1, 300).Draw(t, "universe")
	skewed := rapid.Bool().Draw(t, "skewed")
	return rapid.SliceOfN(rapid.Custom(func(t *rapid.T) streamOp {
		k := rapid.IntRange(0, universe-1).Draw(t, "k")
		if skewed {
			k = k * k / universe // squash towards 0: a few heavy keys
		}
		return streamOp{
			node: crdt.NodeID(rapid.IntRange(1, nodes).Draw(t, "node")),
			key:  fmt.Sprintf("k%d", k),
			by:   rapid.SampledFrom([]uint64{1, 1, 1, 2, 5, 100}).Draw(t, "by"),
		}
	}), 0, 400).Draw(t, "ops")
}

// The sketch never underestimates, on any stream; and it overestimates by
// more than ε·N for at most a δ fraction of the key queries, counted over
// every stream the property draws.
func TestCountMinBoundProperty(t *testing.T) {
	var queries, over int
	var allowed float64
	rapid.Check(t, func(t *rapid.T) {
		p := genParams(t)
		ops := genStream(t, 1)
		s := crdt.NewCountMin(p)
		truth := map[string]uint64{}
		var n uint64
		for _, op := range ops {
			if err := s.Add(op.node, op.key, op.by); err != nil {
				t.Fatal(err)
			}
			truth[op.key] += op.by
			n += op.by
		}
		if s.Total() != n {
			t.Fatalf("Total = %d, want %d", s.Total(), n)
		}
		bound := p.Bound(n)
		// Query the keys seen and some never seen (true count 0).
		for i := range 20 {
			truth[fmt.Sprintf("absent%d", i)] += 0
		}
		for k, want := range truth {
			est := s.Estimate(k)
			if est < want {
				t.Fatalf("Estimate(%q) = %d below the true %d", k, est, want)
			}
			if est > n {
				t.Fatalf("Estimate(%q) = %d above the total %d", k, est, n)
			}
			queries++
			if est > want+bound {
				over++
			}
			allowed += 1 - p.Confidence
		}
	})
	// The expected number of misses is at most allowed; leave room for
	// chance (a few standard deviations of a binomial).
	if limit := allowed + 4*math.Sqrt(allowed) + 1; float64(over) > limit {
		t.Fatalf("%d of %d estimates exceeded truth+ε·N; the stated confidence allows about %.0f", over, queries, allowed)
	}
	t.Logf("%d of %d estimates exceeded truth+ε·N (allowed about %.0f)", over, queries, allowed)
}

// Replicas that add to their own slots and merge in any order, any number of
// times, end in the same state, which estimates exactly as one sketch fed
// the whole stream; merge is commutative, associative and idempotent.
func TestCountMinMergeProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p := genParams(t)
		const nodes = 3
		ops := genStream(t, nodes)
		replicas := make([]*crdt.CountMin, nodes)
		for i := range replicas {
			replicas[i] = crdt.NewCountMin(p)
		}
		whole := crdt.NewCountMin(p)
		for i, op := range ops {
			r := replicas[op.node-1]
			if err := r.Add(op.node, op.key, op.by); err != nil {
				t.Fatal(err)
			}
			if err := whole.Add(1, op.key, op.by); err != nil {
				t.Fatal(err)
			}
			// Now and then a replica sends its state to another.
			if rapid.IntRange(0, 9).Draw(t, fmt.Sprintf("gossip%d", i)) == 0 {
				to := rapid.IntRange(0, nodes-1).Draw(t, fmt.Sprintf("to%d", i))
				if err := replicas[to].Merge(r.Clone()); err != nil {
					t.Fatal(err)
				}
			}
		}
		a, b, c := replicas[0], replicas[1], replicas[2]
		// Commutative and associative.
		abc := a.Clone()
		abc.Merge(b)
		abc.Merge(c)
		cba := c.Clone()
		bc := b.Clone()
		bc.Merge(a)
		cba.Merge(bc)
		if !abc.Equal(cba) {
			t.Fatal("(a⊔b)⊔c differs from c⊔(b⊔a)")
		}
		// Idempotent.
		again := abc.Clone()
		again.Merge(abc)
		again.Merge(b)
		if !again.Equal(abc) {
			t.Fatal("merging a state already included changed the sketch")
		}
		// Inflation: merging never lowers an estimate.
		for _, op := range ops {
			if abc.Estimate(op.key) < a.Estimate(op.key) {
				t.Fatalf("merge lowered the estimate of %q", op.key)
			}
		}
		// The merged replicas read as one sketch of the union.
		if abc.Total() != whole.Total() {
			t.Fatalf("merged total %d, whole stream %d", abc.Total(), whole.Total())
		}
		for _, op := range ops {
			if got, want := abc.Estimate(op.key), whole.Estimate(op.key); got != want {
				t.Fatalf("merged Estimate(%q) = %d, one sketch of the union says %d", op.key, got, want)
			}
		}
	})
}

func TestCountMinRefusesOtherDimensions(t *testing.T) {
	p1, _ := crdt.NewSketchParams(0.01, 0.99)
	p2, _ := crdt.NewSketchParams(0.02, 0.99)
	a, b := crdt.NewCountMin(p1), crdt.NewCountMin(p2)
	if err := a.Merge(b); !errors.Is(err, crdt.ErrSketchParams) {
		t.Fatalf("merging sketches of different widths: %v, want ErrSketchParams", err)
	}
}

// HeavyHitters against a naive model that counts every key exactly.
func TestHeavyHittersProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		capacity := rapid.IntRange(1, 40).Draw(t, "capacity")
		h := crdt.NewHeavyHitters(capacity)
		ops := genStream(t, 1)
		truth := map[string]uint64{}
		var n uint64
		for _, op := range ops {
			h.Offer(op.key, op.by)
			truth[op.key] += op.by
			n += op.by
		}
		if h.Len() > capacity || h.Len() > len(truth) {
			t.Fatalf("tracks %d keys: capacity %d, %d distinct", h.Len(), capacity, len(truth))
		}
		if h.Total() != n {
			t.Fatalf("Total = %d, want %d", h.Total(), n)
		}
		items := h.Items()
		var sum uint64
		tracked := map[string]bool{}
		for i, it := range items {
			if i > 0 && (items[i-1].Count < it.Count || (items[i-1].Count == it.Count && items[i-1].Key > it.Key)) {
				t.Fatalf("Items not sorted at %d: %+v then %+v", i, items[i-1], it)
			}
			if tracked[it.Key] {
				t.Fatalf("%q tracked twice", it.Key)
			}
			tracked[it.Key] = true
			sum += it.Count
			if want := truth[it.Key]; want > it.Count || it.Count-it.Err > want {
				t.Fatalf("%q: true count %d outside [%d, %d]", it.Key, want, it.Count-it.Err, it.Count)
			}
		}
		if sum != n {
			t.Fatalf("counts sum to %d, want the total %d", sum, n)
		}
		for k, c := range truth {
			if c*uint64(capacity) > n && !tracked[k] {
				t.Fatalf("%q has %d of %d (more than N/%d) but is not tracked", k, c, n, capacity)
			}
		}
	})
}

// zipfStream draws views page views over keys keys with a Zipf law of
// exponent s (rank 0 the most viewed), from a fixed seed.
func zipfStream(views, keys int, s float64, seed uint64) []uint32 {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	z := rand.NewZipf(r, s, 1, uint64(keys-1))
	out := make([]uint32, views)
	for i := range out {
		out[i] = uint32(z.Uint64())
	}
	return out
}

func pageKey(i uint32) string { return fmt.Sprintf("page/%d", i) }

// The sketch's documented error bound at full size: 10,000,000
// page views over 1,000,000 keys (Zipf, s = 1.1), epsilon 0.1 %,
// confidence 99 %. Every estimate is at least the truth; at least 99 % of
// the keys are within ε·N; the memory is w×d cells whatever the number of
// keys; and the top 10 by estimate among the heavy hitters is the true top
// 10. (package node runs the same stream through the node at reduced size,
// and at full size with COUNTMESH_APPROX_FULL=1.)
func TestCountMinZipfAcceptance(t *testing.T) {
	if testing.Short() {
		t.Skip("10M updates: skipped with -short")
	}
	const views, keys = 10_000_000, 1_000_000
	p, err := crdt.NewSketchParams(0.001, 0.99)
	if err != nil {
		t.Fatal(err)
	}
	stream := zipfStream(views, keys, 1.1, 1)
	names := make([]string, keys)
	for i := range names {
		names[i] = pageKey(uint32(i))
	}
	s := crdt.NewCountMin(p)
	hh := crdt.NewHeavyHitters(1000)
	truth := make([]uint64, keys)
	for _, k := range stream {
		s.Add(7, names[k], 1)
		hh.Offer(names[k], 1)
		truth[k]++
	}
	bound := p.Bound(views)
	var within, seen int
	var maxErr uint64
	for k, want := range truth {
		est := s.Estimate(names[k])
		if est < want {
			t.Fatalf("%s: estimate %d below the true %d", names[k], est, want)
		}
		if est-want <= bound {
			within++
		}
		maxErr = max(maxErr, est-want)
		if want > 0 {
			seen++
		}
	}
	frac := float64(within) / keys
	t.Logf("%d×%d cells; %d keys seen; %d of %d keys (%.4f%%) over ε·N = %d; largest error %d",
		p.Depth, p.Width, seen, keys-within, keys, 100*(1-frac), bound, maxErr)
	if frac < p.Confidence {
		t.Fatalf("only %.5f of the keys are within ε·N = %d, want at least %g", frac, bound, p.Confidence)
	}
	checkTop10(t, names, truth, hh.Keys(nil), s.Estimate, bound)
}

// checkTop10 compares the top 10 of the candidates by estimate with the
// true top 10: the same keys (unless the true 10th and 11th are within the
// error bound of each other), and at each rank a key whose true count is
// within the bound of the true key of that rank.
func checkTop10(t *testing.T, names []string, truth []uint64, candidates []string, estimate func(string) uint64, bound uint64) {
	t.Helper()
	type kv struct {
		key string
		v   uint64
	}
	byValue := func(a, b kv) int {
		if a.v != b.v {
			return cmp.Compare(b.v, a.v)
		}
		return cmp.Compare(a.key, b.key)
	}
	var est []kv
	for _, k := range candidates {
		est = append(est, kv{k, estimate(k)})
	}
	slices.SortFunc(est, byValue)
	real := make([]kv, len(truth))
	count := make(map[string]uint64, len(truth))
	for i, c := range truth {
		real[i] = kv{names[i], c}
		count[names[i]] = c
	}
	slices.SortFunc(real, byValue)
	if len(est) < 10 {
		t.Fatalf("only %d candidates for the top 10", len(est))
	}
	if real[9].v-real[10].v > bound {
		want := map[string]bool{}
		for _, r := range real[:10] {
			want[r.key] = true
		}
		for _, e := range est[:10] {
			if !want[e.key] {
				t.Fatalf("%s (estimate %d, true %d) is in the estimated top 10 but not in the true top 10 %v", e.key, e.v, count[e.key], real[:10])
			}
		}
	}
	for i := range 10 {
		got, want := count[est[i].key], real[i].v
		if max(got, want)-min(got, want) > bound {
			t.Fatalf("rank %d: %s (true %d), but the true rank %d is %s (%d): apart by more than the bound %d",
				i+1, est[i].key, got, i+1, real[i].key, want, bound)
		}
	}
	t.Logf("top 10 by estimate %v; true %v", est[:10], real[:10])
}
