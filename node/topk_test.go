package node

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// trueTop returns the k largest of vals (ties by key), as the top set ranks.
func trueTop(keys []string, vals []int64, k int, prefix string) []Counter {
	var all []Counter
	for i, v := range vals {
		if v != 0 && strings.HasPrefix(keys[i], prefix) {
			all = append(all, Counter{Key: keys[i], Value: v})
		}
	}
	slices.SortFunc(all, func(a, b Counter) int {
		if c := cmp.Compare(b.Value, a.Value); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return all[:min(k, len(all))]
}

func sameTop(got, want []Counter) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].Key != want[i].Key || got[i].Value != want[i].Value {
			return false
		}
	}
	return true
}

// TestTopThroughTheNode ranks counters written through the node (all time,
// a window, a prefix), and keeps the ranking up to date after deletes and
// replicated changes.
func TestTopThroughTheNode(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 3, 2, 12, 30, 0, 0, time.UTC)}
	cfg := testConfig(t, vfs.NewMem())
	cfg.Now = clock.Now
	n := openTest(t, cfg)
	ctx := context.Background()
	putWindows(t, n, "pv", []string{"1h"}, nil)
	const nkeys = 20_000
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("%c/%05d", 'a'+i%3, i)
	}
	vals := make([]int64, nkeys)
	hour := make([]int64, nkeys) // counts in the current hour's bucket
	rng := rand.New(rand.NewPCG(3, 5))
	zipf := rand.NewZipf(rng, 1.2, 1, nkeys-1)
	write := func(batches int, inHour bool) {
		for range batches {
			ops := make([]BatchOp, 0, 2000)
			for range 2000 {
				i := int(zipf.Uint64())
				ops = append(ops, BatchOp{NS: "pv", Key: keys[i], By: 1})
				vals[i]++
				if inHour {
					hour[i]++
				}
			}
			if _, err := n.Batch(ctx, ops, "", false); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The previous hour, then the current one.
	clock.Set(clock.Now().Add(-time.Hour))
	write(20, false)
	clock.Set(clock.Now().Add(time.Hour))
	// Ask before the second half, so that the sets are maintained
	// incrementally afterwards.
	if _, err := n.Top(ctx, "pv", 10, "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Top(ctx, "pv", 10, "1h", ""); err != nil {
		t.Fatal(err)
	}
	write(20, true)
	check := func(what string, window, prefix string, want []Counter) {
		t.Helper()
		res, err := n.Top(ctx, "pv", 10, window, prefix)
		if err != nil {
			t.Fatal(err)
		}
		if !sameTop(res.Items, want) || !res.Exact {
			t.Fatalf("%s: top = %v (exact %v), want %v", what, res.Items, res.Exact, want)
		}
	}
	check("all time", "", "", trueTop(keys, vals, 10, ""))
	check("current hour", "1h", "", trueTop(keys, hour, 10, ""))
	check("prefix b/", "", "b/", trueTop(keys, vals, 10, "b/"))
	// Deleting the leader removes it from the ranking at once.
	lead := trueTop(keys, vals, 1, "")[0]
	if err := n.Delete(ctx, "pv", lead.Key); err != nil {
		t.Fatal(err)
	}
	vals[slices.Index(keys, lead.Key)] = 0
	res, err := n.Top(ctx, "pv", 10, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if want := trueTop(keys, vals, 10, ""); !sameTop(res.Items, want) {
		t.Fatalf("after deleting %s: top = %v, want %v", lead.Key, res.Items, want)
	}
}

// topMillion fills a node with nkeys counters (each written once) and then
// 2,000,000 Zipf-distributed increments, through batches; it returns the
// node, the keys, their values and the Zipf source.
func topMillion(tb testing.TB, nkeys int) (*Node, []string, []int64, *rand.Zipf) {
	cfg := testConfig(tb, vfs.NewMem())
	cfg.CacheCounters = nkeys + 1000
	cfg.Logger = nil
	n := openTest(tb, cfg)
	ctx := context.Background()
	if _, err := n.PutNamespace(ctx, "pv", NamespacePatch{Durability: ptr(DurabilityAsync)}); err != nil {
		tb.Fatal(err)
	}
	keys := make([]string, nkeys)
	vals := make([]int64, nkeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("page/%07d", i)
	}
	ops := make([]BatchOp, 0, MaxBatchOps)
	flush := func() {
		if _, err := n.Batch(ctx, ops, "", false); err != nil {
			tb.Fatal(err)
		}
		ops = ops[:0]
	}
	for i := range keys { // every counter exists
		ops = append(ops, BatchOp{NS: "pv", Key: keys[i], By: 1})
		vals[i]++
		if len(ops) == cap(ops) {
			flush()
		}
	}
	rng := rand.New(rand.NewPCG(1, 1))
	zipf := rand.NewZipf(rng, 1.1, 1, uint64(nkeys-1))
	for range 2_000_000 {
		i := zipf.Uint64()
		ops = append(ops, BatchOp{NS: "pv", Key: keys[i], By: 1})
		vals[i]++
		if len(ops) == cap(ops) {
			flush()
		}
	}
	flush()
	return n, keys, vals, zipf
}

// TestLargeTopMillionThroughTheNode checks top-K through
// the node: 1,000,000 counters, a Zipf workload, the true top 10 (from the
// first query's scan, then from the incrementally maintained set after
// 200,000 more increments).
func TestLargeTopMillionThroughTheNode(t *testing.T) {
	n, keys, vals, zipf := topMillion(t, 1_000_000)
	ctx := context.Background()
	res, err := n.Top(ctx, "pv", 10, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if want := trueTop(keys, vals, 10, ""); !sameTop(res.Items, want) || !res.Exact {
		t.Fatalf("top 10 = %v (exact %v), want %v", res.Items, res.Exact, want)
	}
	ops := make([]BatchOp, 0, MaxBatchOps)
	for range 200_000 {
		i := zipf.Uint64()
		ops = append(ops, BatchOp{NS: "pv", Key: keys[i], By: 1})
		vals[i]++
		if len(ops) == cap(ops) {
			if _, err := n.Batch(ctx, ops, "", false); err != nil {
				t.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	res, err = n.Top(ctx, "pv", 10, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if want := trueTop(keys, vals, 10, ""); !sameTop(res.Items, want) || !res.Exact {
		t.Fatalf("top 10 after more writes = %v (exact %v), want %v", res.Items, res.Exact, want)
	}
}

// BenchmarkTopMillion measures top-10 queries over a namespace of 1,000,000
// counters fed a Zipf workload (COUNTMESH_TOP_KEYS overrides the size).
func BenchmarkTopMillion(b *testing.B) {
	nkeys := 1_000_000
	if v := os.Getenv("COUNTMESH_TOP_KEYS"); v != "" {
		fmt.Sscan(v, &nkeys)
	}
	n, keys, vals, zipf := topMillion(b, nkeys)
	ctx := context.Background()
	start := time.Now()
	first, err := n.Top(ctx, "pv", 10, "", "")
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("first query (builds the set from a scan of %d counters): %s", nkeys, time.Since(start))
	if want := trueTop(keys, vals, 10, ""); !sameTop(first.Items, want) {
		b.Fatalf("top 10 = %v, want %v", first.Items, want)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Keep writing between queries, as a live namespace does.
		k := zipf.Uint64()
		if _, err := n.Incr(ctx, "pv", keys[k], 1, WriteOptions{}); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		res, err := n.Top(ctx, "pv", 10, "", "")
		lat = append(lat, time.Since(t0))
		if err != nil || !res.Exact {
			b.Fatalf("top: %v (exact %v)", err, res.Exact)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
