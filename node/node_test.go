package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap/zaptest"
)

func testConfig(t testing.TB, fs vfs.FS) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Name = "n1"
	cfg.Store.Dir = "data"
	cfg.Store.FS = fs
	cfg.Peers = testMembers{}
	if tt, ok := t.(*testing.T); ok {
		cfg.Logger = zaptest.NewLogger(tt)
	}
	return cfg
}

// testMembers are the members of every test node that sets no Peers of its
// own: the names the tests open nodes under, so that the nodes accept each
// other's slots (peerinput.go). No transport goes with them: a test node is
// its own quorum.
type testMembers struct{}

func (testMembers) Peers() []Peer { // "src" is BenchmarkCatchUp's source
	var out []Peer
	for _, name := range []string{"n1", "n2", "n3", "a", "b", "c", "other", "src"} {
		out = append(out, Peer{Name: name, Region: "local", Alive: true})
	}
	return out
}

func openTest(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := Open(cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func mustGet(t testing.TB, n *Node, ns, key string) int64 {
	t.Helper()
	c, err := n.Get(context.Background(), ns, key, ReadOptions{})
	if err != nil {
		t.Fatalf("get %s/%s: %v", ns, key, err)
	}
	return c.Value
}

func TestConcurrentIncrementsAreExact(t *testing.T) {
	n := openTest(t, testConfig(t, vfs.NewMem()))
	ctx := context.Background()
	const workers, per = 8, 300
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				key := fmt.Sprintf("k%d", i%5)
				if _, err := n.Incr(ctx, "ns", key, int64(w+1), WriteOptions{}); err != nil {
					t.Errorf("incr: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var total int64
	for i := range 5 {
		total += mustGet(t, n, "ns", fmt.Sprintf("k%d", i))
	}
	want := int64(per * workers * (workers + 1) / 2)
	if total != want {
		t.Fatalf("total %d, want %d", total, want)
	}
}

// With a cache far smaller than the counters, values survive eviction and
// are read back through the store, and the cache stays near its bound.
func TestEvictionReadsThrough(t *testing.T) {
	t.Run("entries", func(t *testing.T) { testEvictionReadsThrough(t, 64, 0) })
	// 32 entries and 968 packed records: counters go from the map to the
	// compact tier and on to Pebble alone.
	t.Run("packed", func(t *testing.T) { testEvictionReadsThrough(t, 1000, 32) })
}

func testEvictionReadsThrough(t *testing.T, cache, hot int) {
	cfg := testConfig(t, vfs.NewMem())
	cfg.CacheCounters, cfg.HotCounters = cache, hot
	cfg.Stripes = 16
	n := openTest(t, cfg)
	ctx := context.Background()
	const keys = 2000
	for round := 1; round <= 3; round++ {
		for i := range keys {
			if _, err := n.Incr(ctx, "ev", fmt.Sprintf("k%04d", i), int64(i), WriteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		// Counters not yet checkpointed cannot be evicted; a checkpoint
		// trims what they held over the bound, without waiting for new
		// counters to push them out.
		if err := n.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		if got, bound := n.keys.Count(""), n.keys.Bound(); got > bound {
			t.Fatalf("round %d, after a checkpoint: %d counters cached, bound %d", round, got, bound)
		}
		for i := range keys {
			mustGet(t, n, "ev", fmt.Sprintf("k%04d", i))
		}
		if got, bound := n.keys.Count(""), n.keys.Bound(); got > bound {
			t.Fatalf("round %d: %d counters cached, bound %d", round, got, bound)
		}
	}
	for i := range keys {
		if got, want := mustGet(t, n, "ev", fmt.Sprintf("k%04d", i)), int64(3*i); got != want {
			t.Fatalf("k%04d = %d, want %d", i, got, want)
		}
	}
}

func TestRestartRecovers(t *testing.T) {
	fs := vfs.NewMem()
	cfg := testConfig(t, fs)
	ctx := context.Background()
	n, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.Incr(ctx, "a", "x", 5, WriteOptions{})
	n.Reset(ctx, "a", "y", 100)
	n.Incr(ctx, "a", "z", 1, WriteOptions{})
	n.Delete(ctx, "a", "z")
	async := "async"
	if _, err := n.PutNamespace(ctx, "b", NamespacePatch{Durability: &async}); err != nil {
		t.Fatal(err)
	}
	n.Incr(ctx, "b", "q", 2, WriteOptions{})
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = openTest(t, cfg)
	for _, c := range []struct {
		ns, key string
		want    int64
	}{{"a", "x", 5}, {"a", "y", 100}, {"a", "z", 0}, {"b", "q", 2}} {
		if got := mustGet(t, n, c.ns, c.key); got != c.want {
			t.Errorf("%s/%s = %d, want %d", c.ns, c.key, got, c.want)
		}
	}
	ns, err := n.GetNamespace("b")
	if err != nil || ns.Config.Durability != "async" {
		t.Fatalf("namespace b after restart: %+v %v", ns, err)
	}
	page, err := n.List(ctx, "a", "", "", 10)
	if err != nil || len(page.Items) != 2 {
		t.Fatalf("list after restart: %+v %v (the deleted z must not be listed)", page, err)
	}
}

func TestBatchIsAllOrNothing(t *testing.T) {
	n := openTest(t, testConfig(t, vfs.NewMem()))
	ctx := context.Background()
	n.Reset(ctx, "b", "high", 1<<62)
	ops := []BatchOp{{NS: "b", Key: "a", By: 1}, {NS: "b", Key: "high", By: MaxBy}}
	for range 600 {
		ops = append(ops, BatchOp{NS: "b", Key: "high", By: MaxBy})
	}
	if _, err := n.Batch(ctx, ops, "", false); !errors.Is(err, ErrOverflow) {
		t.Fatalf("batch crossing int64: %v, want ErrOverflow", err)
	}
	if got := mustGet(t, n, "b", "a"); got != 0 {
		t.Fatalf("refused batch applied its first op: a = %d", got)
	}
	if got := mustGet(t, n, "b", "high"); got != 1<<62 {
		t.Fatalf("refused batch changed high to %d", got)
	}
	res, err := n.Batch(ctx, ops[:2], "", true)
	if err != nil || res.Applied != 2 || res.Values[0] != 1 || res.Values[1] != 1<<62+MaxBy {
		t.Fatalf("batch: %+v %v", res, err)
	}
}

func BenchmarkIncrParallel(b *testing.B) {
	cfg := testConfig(b, vfs.NewMem())
	n := openTest(b, cfg)
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := n.Incr(ctx, "bench", fmt.Sprintf("k%d", i%1000), 1, WriteOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkBatch10k(b *testing.B) {
	cfg := testConfig(b, vfs.NewMem())
	n := openTest(b, cfg)
	ctx := context.Background()
	ops := make([]BatchOp, MaxBatchOps)
	for i := range ops {
		ops[i] = BatchOp{NS: "bench", Key: fmt.Sprintf("k%07d", (i*7919)%100000), By: 1}
	}
	b.ResetTimer()
	for range b.N {
		if _, err := n.Batch(ctx, ops, "", false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(ops))/b.Elapsed().Seconds(), "incr/s")
}
