package node

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/node/series"
)

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// open opens a node named name on an in-memory disk, on this clock.
func (c *fakeClock) open(t *testing.T, name string) *Node {
	cfg := testConfig(t, vfs.NewMem())
	cfg.Name, cfg.Now = name, c.Now
	return openTest(t, cfg)
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func ptr[T any](v T) *T { return &v }

func putWindows(t *testing.T, n *Node, ns string, windows []string, retention map[string]string) {
	t.Helper()
	_, err := n.PutNamespace(context.Background(), ns, NamespacePatch{
		Durability: ptr(DurabilityAsync), Windows: &windows, Retention: &retention,
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestWindowsMatchReferenceOverAWeek feeds a namespace with windows 1m, 1h and
// 1d a week of events (event times given, arriving up to 10 minutes late),
// then checks series and point-in-time reads against sums computed from the
// events, and that buckets past their retention are gone from the store.
func TestWindowsMatchReferenceOverAWeek(t *testing.T) {
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{now: start}
	cfg := testConfig(t, vfs.NewMem())
	cfg.Now = clock.Now
	n := openTest(t, cfg)
	ctx := context.Background()
	putWindows(t, n, "an", []string{"1m", "1h", "1d"}, map[string]string{"1m": "48h", "1h": "5d", "1d": "0"})

	type event struct {
		key string
		at  time.Time
		by  int64
	}
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"home", "cart", "checkout"}
	week := 7 * 24 * time.Hour
	const nEvents = 6000
	var events []event
	for i := range nEvents {
		arrive := start.Add(time.Duration(float64(week) * float64(i) / nEvents))
		at := arrive.Add(-time.Duration(rng.Int64N(int64(10 * time.Minute))))
		if at.Before(start) {
			at = start
		}
		ev := event{key: keys[rng.IntN(len(keys))], at: at, by: rng.Int64N(9) - 2}
		clock.Set(arrive)
		if _, err := n.Incr(ctx, "an", ev.key, ev.by, WriteOptions{At: ev.at}); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		events = append(events, ev)
	}
	end := start.Add(week)
	clock.Set(end)

	// ref sums the events of key with start <= at < stop.
	ref := func(key string, from, stop time.Time) int64 {
		var sum int64
		for _, ev := range events {
			if ev.key == key && !ev.at.Before(from) && ev.at.Before(stop) {
				sum += ev.by
			}
		}
		return sum
	}

	// Before retention runs, 1m buckets older than 48h are still on disk.
	if err := n.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	oldest := func(g series.Granularity) (int64, int) {
		first, count := int64(-1), 0
		prefix := string([]byte{keyspace.KindBucket, g.Idx})
		if err := n.store.ScanCounters("an", prefix, "", func(key string, c crdt.Counter) bool {
			_, s, _, _ := series.ParseBucketKey(key)
			if first < 0 {
				first = s
			}
			count++
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return first, count
	}
	minute, hour, day := series.Granularities[2], series.Granularities[4], series.Granularities[5]
	if first, _ := oldest(minute); first != start.Unix() {
		t.Fatalf("oldest 1m bucket before retention = %d, want %d", first, start.Unix())
	}
	if err := n.DropExpired(ctx); err != nil {
		t.Fatal(err)
	}
	keepMinute := end.Add(-48 * time.Hour).Unix()
	keepHour := end.Add(-5 * 24 * time.Hour).Unix()
	if first, count := oldest(minute); first < keepMinute || count == 0 {
		t.Fatalf("after retention the oldest 1m bucket starts at %s (%d buckets), want none before %s",
			time.Unix(first, 0).UTC(), count, time.Unix(keepMinute, 0).UTC())
	}
	if first, _ := oldest(hour); first < keepHour {
		t.Fatalf("after retention the oldest 1h bucket starts at %s, want none before %s", time.Unix(first, 0).UTC(), time.Unix(keepHour, 0).UTC())
	}
	if first, _ := oldest(day); first != start.Unix() {
		t.Fatalf("1d buckets are kept forever, but the oldest starts at %s", time.Unix(first, 0).UTC())
	}

	for _, key := range keys {
		total := mustGet(t, n, "an", key)
		if want := ref(key, start, end.Add(time.Hour)); total != want {
			t.Fatalf("%s total = %d, want %d", key, total, want)
		}
		cases := []struct {
			from, to time.Time
			step     time.Duration
			window   string
		}{
			{start, end, 24 * time.Hour, "1d"},
			{start.Add(36 * time.Hour), end.Add(-12 * time.Hour), 24 * time.Hour, "1d"}, // unaligned: points start at midnight
			{end.Add(-5 * 24 * time.Hour), end, time.Hour, "1h"},
			{end.Add(-5 * 24 * time.Hour), end, 6 * time.Hour, "1h"},
			{end.Add(-48 * time.Hour), end, time.Minute, "1m"},
			{end.Add(-6 * time.Hour), end.Add(-time.Hour), 5 * time.Minute, "1m"},
		}
		for _, c := range cases {
			res, err := n.Series(ctx, "an", key, c.from, c.to, c.step)
			if err != nil {
				t.Fatalf("series %s %s..%s step %s: %v", key, c.from, c.to, c.step, err)
			}
			if res.Window != c.window {
				t.Fatalf("series step %s answered from window %s, want %s", c.step, res.Window, c.window)
			}
			var total int64
			first := c.from.Truncate(c.step)
			for i, p := range res.Points {
				want := first.Add(time.Duration(i) * c.step)
				if !p.T.Equal(want) {
					t.Fatalf("series %s step %s point %d at %s, want %s", key, c.step, i, p.T, want)
				}
				if w := ref(key, p.T, p.T.Add(c.step)); p.Delta != w {
					t.Fatalf("series %s step %s point %s delta = %d, want %d", key, c.step, p.T, p.Delta, w)
				}
				total += p.Delta
			}
			if wantN := int((c.to.Sub(first) + c.step - 1) / c.step); len(res.Points) != wantN {
				t.Fatalf("series %s step %s: %d points, want %d", key, c.step, len(res.Points), wantN)
			}
			if res.Total != total {
				t.Fatalf("series total %d, points sum to %d", res.Total, total)
			}
		}
		// A bucket at a time: the finest bucket still kept (point-in-time
		// values are checked in pointintime_test.go).
		for range 40 {
			at := start.Add(time.Duration(rng.Int64N(int64(week))))
			var g time.Duration
			var name string
			switch {
			case at.Truncate(time.Minute).Unix() >= keepMinute:
				g, name = time.Minute, "1m"
			case at.Truncate(time.Hour).Unix() >= keepHour:
				g, name = time.Hour, "1h"
			default:
				g, name = 24*time.Hour, "1d"
			}
			b := at.Truncate(g)
			c, err := n.Get(ctx, "an", key, ReadOptions{At: at, Window: name})
			if err != nil {
				t.Fatal(err)
			}
			if c.Window != name || !c.BucketStart.Equal(b) {
				t.Fatalf("at %s answered from %s bucket %s, want %s bucket %s", at, c.Window, c.BucketStart, name, b)
			}
			if want := ref(key, b, b.Add(g)); c.Value != want {
				t.Fatalf("%s at %s = %d, want %d", key, at, c.Value, want)
			}
		}
	}
}

func TestWindowErrors(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)}
	cfg := testConfig(t, vfs.NewMem())
	cfg.Now = clock.Now
	n := openTest(t, cfg)
	ctx := context.Background()
	putWindows(t, n, "w", []string{"1m", "1h"}, map[string]string{"1m": "1h", "1h": "24h"})
	if _, err := n.Incr(ctx, "plain", "k", 1, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	now := clock.Now()
	bad := []struct {
		name string
		err  error
	}{
		{"series without windows", func() error { _, err := n.Series(ctx, "plain", "k", time.Time{}, time.Time{}, 0); return err }()},
		{"from after to", func() error { _, err := n.Series(ctx, "w", "k", now, now.Add(-time.Hour), time.Minute); return err }()},
		{"step not a multiple", func() error { _, err := n.Series(ctx, "w", "k", time.Time{}, time.Time{}, 90*time.Second); return err }()},
		{"too many points", func() error {
			_, err := n.Series(ctx, "w", "k", now.Add(-30*24*time.Hour), now, time.Minute)
			return err
		}()},
		{"at beyond retention", func() error {
			_, err := n.Get(ctx, "w", "k", ReadOptions{At: now.Add(-1000 * 24 * time.Hour)})
			return err
		}()},
		{"at in the future", func() error { _, err := n.Get(ctx, "w", "k", ReadOptions{At: now.Add(2 * time.Hour)}); return err }()},
		{"at without windows", func() error { _, err := n.Get(ctx, "plain", "k", ReadOptions{At: now}); return err }()},
		{"event too far ahead", func() error { _, err := n.Incr(ctx, "w", "k", 1, WriteOptions{At: now.Add(2 * time.Hour)}); return err }()},
		{"top unknown window", func() error { _, err := n.Top(ctx, "w", 10, "1d", ""); return err }()},
		{"top k zero", func() error { _, err := n.Top(ctx, "w", 0, "", ""); return err }()},
		{"aggregate bad window", func() error { _, err := n.Aggregate(ctx, "w", "", "5m", ""); return err }()},
		{"aggregate unknown label", func() error { _, err := n.Aggregate(ctx, "plain", "", "", "country"); return err }()},
		{"aggregate bad label name", func() error { _, err := n.Aggregate(ctx, "plain", "", "", "Country!"); return err }()},
	}
	for _, c := range bad {
		if !errors.Is(c.err, ErrInvalidArgument) {
			t.Errorf("%s: got %v, want ErrInvalidArgument", c.name, c.err)
		}
	}
	// A refused event time changed nothing.
	if v := mustGet(t, n, "w", "k"); v != 0 {
		t.Fatalf("w/k = %d after a refused increment, want 0", v)
	}
}

// TestReplicatedBucketsAndRetention checks that buckets replicate like
// counters, and that a peer's copy of a bucket past retention is not
// brought back.
func TestReplicatedBucketsAndRetention(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)}
	a, b := clock.open(t, "a"), clock.open(t, "b")
	ctx := context.Background()
	putWindows(t, a, "w", []string{"1m"}, map[string]string{"1m": "10m"})
	antiEntropy(t, a, b)
	t0 := clock.Now()
	for i := range 5 {
		if _, err := a.Incr(ctx, "w", "k", int64(i+1), WriteOptions{At: t0.Add(-time.Duration(i) * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	antiEntropy(t, a, b)
	res, err := b.Series(ctx, "w", "k", t0.Add(-4*time.Minute), t0.Add(time.Minute), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{5, 4, 3, 2, 1}
	for i, p := range res.Points {
		if p.Delta != want[i] {
			t.Fatalf("replicated series point %d = %d, want %d (%v)", i, p.Delta, want[i], res.Points)
		}
	}
	// Twenty minutes on, the buckets are past retention on b; a's old
	// copies arriving again by anti-entropy are dropped.
	clock.Set(t0.Add(20 * time.Minute))
	if err := b.DropExpired(ctx); err != nil {
		t.Fatal(err)
	}
	var batch []string
	if err := a.Replica().ScanSince(a.ID(), 0, func(d change.Delta) bool { batch = append(batch, d.Key); return true }); err != nil {
		t.Fatal(err)
	}
	if len(batch) == 0 {
		t.Fatal("a has nothing to resend")
	}
	resendAll(t, a, b)
	if err := b.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	found := 0
	if err := b.store.ScanCounters("w", string([]byte{keyspace.KindBucket}), "", func(string, crdt.Counter) bool { found++; return true }); err != nil {
		t.Fatal(err)
	}
	if found != 0 {
		t.Fatalf("b holds %d buckets past retention after a resent them", found)
	}
	if got := mustGet(t, b, "w", "k"); got != 15 {
		t.Fatalf("b total = %d, want 15", got)
	}
}

func TestLabelsSumAndSplit(t *testing.T) {
	n := openTest(t, testConfig(t, vfs.NewMem()))
	ctx := context.Background()
	incr := func(key string, by int64, labels map[string]string) {
		t.Helper()
		if _, err := n.Incr(ctx, "ev", key, by, WriteOptions{Labels: labels}); err != nil {
			t.Fatal(err)
		}
	}
	incr("signup", 3, map[string]string{"country": "us", "device": "ios"})
	incr("signup", 2, map[string]string{"country": "us", "device": "web"})
	incr("signup", 4, map[string]string{"country": "de"})
	incr("signup", 1, nil)
	incr("login", 7, map[string]string{"country": "de"})
	if got := mustGet(t, n, "ev", "signup"); got != 10 {
		t.Fatalf("signup = %d, want the sum over its series 10", got)
	}
	page, err := n.List(ctx, "ev", "", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 2 {
		t.Fatalf("listing shows %d counters (%v), want the 2 keys without their series", len(page.Items), page.Items)
	}
	res, err := n.Aggregate(ctx, "ev", "", "", "country")
	if err != nil {
		t.Fatal(err)
	}
	if res.Count != 2 || res.Sum != 17 || res.Min != 7 || res.Max != 10 {
		t.Fatalf("aggregate = %+v, want count 2 sum 17 min 7 max 10", res.Stats)
	}
	us, de := res.Groups["us"], res.Groups["de"]
	if us.Count != 1 || us.Sum != 5 || de.Count != 2 || de.Sum != 11 || de.Min != 4 || de.Max != 7 {
		t.Fatalf("groups = %+v", res.Groups)
	}
	if len(res.Groups) != 2 {
		t.Fatalf("groups = %v, want us and de", res.Groups)
	}
}

func resendAll(t *testing.T, src, dst *Node) {
	t.Helper()
	var ds []change.Delta
	if err := src.Replica().ScanSince(src.ID(), 0, func(d change.Delta) bool { ds = append(ds, d); return true }); err != nil {
		t.Fatal(err)
	}
	if err := dst.Replica().Apply(change.Batch{Deltas: ds}); err != nil {
		t.Fatal(err)
	}
}
