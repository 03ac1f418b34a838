package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"pgregory.net/rapid"
)

// minute0 is the start of a minute (and of every window that divides it).
var minute0 = time.Unix(1_800_000_000, 0)

// keyOwnedBy returns a key of namespace "api" whose limit over w is owned
// by want among names.
func keyOwnedBy(t testing.TB, want string, w time.Duration, names ...string) string {
	t.Helper()
	for i := range 1000 {
		k := fmt.Sprintf("user:%d", i)
		if ownerOf("api", k, w, names...) == want {
			return k
		}
	}
	t.Fatalf("no key owned by %s", want)
	return ""
}

// TestMeshAcceptance is the mesh-wide limit's promise: 3 nodes, 1,000/min for one
// key, clients hammering all three: at most 1,001 admitted in the window
// (here: exactly the limit, since every node is hammered until refused,
// so no lease budget is left stranded).
func TestMeshAcceptance(t *testing.T) {
	m := newMesh(t, minute0.Add(10*time.Second), nil, "a", "b", "c")
	req := Request{NS: "api", Key: "user:1", Limit: 1000, Window: time.Minute, Cost: 1}
	got := hammer(t, m, m.names, 4, 50, req, 10*time.Second)
	total := sum(got)
	t.Logf("admitted per node %v, total %d, lease calls %d", got, total, m.net.calls.Load())
	if total > req.Limit+1 {
		t.Errorf("admitted %d in one window, limit %d: over-admission", total, req.Limit)
	}
	if total < req.Limit {
		t.Errorf("admitted %d in one window, limit %d: budget left stranded", total, req.Limit)
	}
	var fromLeases int64
	for _, n := range m.names {
		fromLeases += m.nodes[n].Stats().Lease
	}
	if fromLeases == 0 {
		t.Error("no request was admitted from a lease: only the owner admitted")
	}
	// Leases batch: far fewer calls than admitted requests.
	if calls := m.net.calls.Load(); calls*4 > total {
		t.Errorf("%d lease calls for %d admitted requests: leases do not batch", calls, total)
	}
}

// TestMeshSlidingWindow hammers the mesh at every tenth of a window over
// 3.5 windows and checks the sliding-window estimate of what was admitted
// (prev × (1 − elapsed/window) + curr) against the limit after each step:
// never above it, and never more than 2 below it (nothing stranded).
func TestMeshSlidingWindow(t *testing.T) {
	m := newMesh(t, minute0, nil, "a", "b", "c")
	req := Request{NS: "api", Key: "user:7", Limit: 300, Window: time.Minute, Cost: 1}
	adm := map[int64]int64{}
	for step := range 35 {
		got := hammer(t, m, m.names, 2, 20, req, 5*time.Second)
		id, elapsed := windowAt(m.clock.Now(), req.Window)
		adm[id] += sum(got)
		est := estimate(adm[id-1], adm[id], elapsed, req.Window)
		if est > float64(req.Limit)+1e-9 {
			t.Errorf("step %d: estimate %.2f over the limit %d (prev %d, curr %d)", step, est, req.Limit, adm[id-1], adm[id])
		}
		if est < float64(req.Limit-2) {
			t.Errorf("step %d: estimate %.2f well under the limit %d: budget stranded", step, est, req.Limit)
		}
		m.clock.Advance(req.Window / 10)
	}
}

// TestPartition cuts node c off from a and b, first before the membership
// notices (c decides on its share, limit/3), then after (each side has its
// own owner), then heals. The documented bounds: limit + limit/3 before
// the membership changes, 2 × limit per window with two sides, and after
// the heal the owner learns what c's side admitted.
func TestPartition(t *testing.T) {
	const limit = 1000
	w := time.Minute
	key := keyOwnedBy(t, "a", w, "a", "b", "c")
	m := newMesh(t, minute0.Add(5*time.Second), nil, "a", "b", "c")
	req := Request{NS: "api", Key: key, Limit: limit, Window: w, Cost: 1}
	ctx := context.Background()

	var total int64
	for _, n := range m.names { // some traffic everywhere first: c holds a lease
		for range 50 {
			if d, err := m.nodes[n].Decide(ctx, req); err != nil || !d.Allowed {
				t.Fatalf("%s: %+v %v", n, d, err)
			}
			total++
		}
	}

	m.net.partition([]string{"a", "b"}, []string{"c"})
	got := hammer(t, m, m.names, 2, 30, req, 10*time.Second)
	total += sum(got)
	t.Logf("cut, membership unchanged: %v", got)
	if total > limit+limit/3 {
		t.Errorf("admitted %d, bound limit + limit/3 = %d", total, limit+limit/3)
	}
	if m.nodes["c"].Stats().Fallback == 0 {
		t.Error("c made no fallback decision while cut off")
	}

	m.members["c"].set("c")
	m.members["a"].set("a", "b")
	m.members["b"].set("a", "b")
	got = hammer(t, m, m.names, 2, 30, req, 10*time.Second)
	total += sum(got)
	t.Logf("cut, two sides: %v, total %d", got, total)
	if total > 2*limit {
		t.Errorf("admitted %d with two sides, bound 2 × limit = %d", total, 2*limit)
	}
	if got["a"]+got["b"] != 0 {
		t.Errorf("a's side admitted %d more though its owner had given out the whole limit", got["a"]+got["b"])
	}

	// Heal, past the time c stops asking a (OwnerDownHold), same window.
	m.clock.Advance(2 * time.Second)
	m.net.heal()
	for _, n := range m.names {
		m.members[n].set(m.names...)
	}
	got = hammer(t, m, m.names, 2, 30, req, 10*time.Second)
	if sum(got) != 0 {
		t.Errorf("after the heal the mesh admitted %d more in a window already over the limit: c's counts did not reach the owner", sum(got))
	}

	// Two windows later everything has decayed: the whole limit again.
	m.clock.Advance(2 * w)
	got = hammer(t, m, m.names, 2, 30, req, 10*time.Second)
	if s := sum(got); s < limit-1 || s > limit {
		t.Errorf("two windows after the heal admitted %d, want the limit %d", s, limit)
	}
}

// TestOwnerDies: the owner of a limit dies mid-window; the new owner learns
// what the survivors admitted as they reach it, so the window admits at
// most 2 × limit in all, and at least what the dead owner's death freed.
func TestOwnerDies(t *testing.T) {
	const limit = 600
	w := time.Minute
	key := keyOwnedBy(t, "a", w, "a", "b", "c")
	m := newMesh(t, minute0.Add(5*time.Second), nil, "a", "b", "c")
	req := Request{NS: "api", Key: key, Limit: limit, Window: w, Cost: 1}

	before := hammer(t, m, m.names, 2, 30, req, 10*time.Second)
	if s := sum(before); s != limit {
		t.Fatalf("admitted %d before the death, want %d", s, limit)
	}
	m.net.mu.Lock()
	delete(m.net.nodes, "a")
	m.net.mu.Unlock()
	m.members["b"].set("b", "c")
	m.members["c"].set("b", "c")
	m.clock.Advance(2 * time.Second)

	after := hammer(t, m, []string{"b", "c"}, 2, 30, req, 10*time.Second)
	t.Logf("before %v, after %v", before, after)
	// At most what a admitted itself plus what the survivors had admitted
	// before they reached the new owner; never more than the limit again.
	if s := sum(after); s > limit || s < before["a"]-1 {
		t.Errorf("admitted %d after a died; want from %d (what a had admitted itself) to %d (the limit)", s, before["a"]-1, limit)
	}
}

// TestIdleExpiry: a limit is dropped two windows after its last use, not
// before (its count still weighs on the estimate until then).
func TestIdleExpiry(t *testing.T) {
	clock := newFakeClock(minute0)
	cfg := DefaultConfig()
	cfg.Membership = Single("solo")
	cfg.Now = clock.Now
	cfg.SweepInterval = time.Hour
	cfg.Logger = zaptest.NewLogger(t)
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	w := 10 * time.Second
	for i := range 100 {
		req := Request{NS: "api", Key: fmt.Sprintf("k%d", i), Limit: 10, Window: w, Cost: 10}
		if d, err := l.Decide(ctx, req); err != nil || !d.Allowed {
			t.Fatalf("%+v %v", d, err)
		}
	}
	clock.Advance(w)
	l.sweep(clock.Now())
	if n := l.Stats().Keys; n != 100 {
		t.Fatalf("%d keys one window after use, want 100", n)
	}
	// Still remembered: the previous window's 10 weigh fully now.
	if d, _ := l.Decide(ctx, Request{NS: "api", Key: "k0", Limit: 10, Window: w, Cost: 1}); d.Allowed {
		t.Error("a limit used up one window ago admitted at once: its state was lost")
	}
	clock.Advance(w)
	l.sweep(clock.Now())
	if n := l.Stats().Keys; n != 1 {
		t.Errorf("%d keys two windows after use, want 1 (k0, used a window later)", n)
	}
	clock.Advance(2 * w)
	l.sweep(clock.Now())
	if n := l.Stats().Keys; n != 0 {
		t.Errorf("%d keys left after every limit idled two windows", n)
	}
}

// TestIdleLeaseReturned: a node that stops using its lease gives the rest
// back, so the owner can hand it to others.
func TestIdleLeaseReturned(t *testing.T) {
	w := time.Minute
	key := keyOwnedBy(t, "a", w, "a", "b")
	m := newMesh(t, minute0.Add(time.Second), nil, "a", "b")
	req := Request{NS: "api", Key: key, Limit: 1000, Window: w, Cost: 1}
	ctx := context.Background()
	if d, err := m.nodes["b"].Decide(ctx, req); err != nil || !d.Allowed || d.Source != SourceLease {
		t.Fatalf("b: %+v %v", d, err)
	}
	d, err := m.nodes["a"].Decide(ctx, req)
	if err != nil || d.Remaining >= 998 {
		t.Fatalf("a sees %d remaining with b's lease out, want less than 998: %v", d.Remaining, err)
	}
	m.clock.Advance(2 * time.Second)
	m.nodes["b"].sweep(m.clock.Now())
	d, err = m.nodes["a"].Decide(ctx, req)
	if err != nil || d.Remaining != 997 {
		t.Errorf("a sees %d remaining after b gave its lease back, want 997: %v", d.Remaining, err)
	}
	if r := m.nodes["a"].Stats().Returns; r != 1 {
		t.Errorf("%d returns, want 1", r)
	}
}

// TestFallbackShareTooSmall: a cut-off node whose share is below the cost
// cannot decide: ErrUnavailable, not a guess.
func TestFallbackShareTooSmall(t *testing.T) {
	w := time.Minute
	key := keyOwnedBy(t, "a", w, "a", "b", "c")
	m := newMesh(t, minute0, nil, "a", "b", "c")
	m.net.partition([]string{"a"}, []string{"b", "c"})
	_, err := m.nodes["b"].Decide(context.Background(), Request{NS: "api", Key: key, Limit: 2, Window: w, Cost: 1})
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("error %v, want ErrUnavailable", err)
	}
}

func TestRequestValidation(t *testing.T) {
	l, err := New(Config{Membership: Single("solo"), LeaseTimeout: time.Second, SweepInterval: time.Hour, MaxKeys: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ok := Request{NS: "api", Key: "k", Limit: 10, Window: time.Second, Cost: 1}
	tests := []struct {
		name string
		mut  func(*Request)
	}{
		{"zero limit", func(r *Request) { r.Limit = 0 }},
		{"negative limit", func(r *Request) { r.Limit = -1 }},
		{"limit over 2^53", func(r *Request) { r.Limit = MaxLimit + 1 }},
		{"zero window", func(r *Request) { r.Window = 0 }},
		{"window under 1ms", func(r *Request) { r.Window = time.Microsecond }},
		{"zero cost", func(r *Request) { r.Cost = 0 }},
		{"negative cost", func(r *Request) { r.Cost = -1 }},
		{"cost over limit", func(r *Request) { r.Cost = 11 }},
		{"no key", func(r *Request) { r.Key = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			tt.mut(&r)
			if _, err := l.Decide(context.Background(), r); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("error %v, want ErrInvalidArgument", err)
			}
		})
	}
	if d, err := l.Decide(context.Background(), ok); err != nil || !d.Allowed {
		t.Fatalf("valid request: %+v %v", d, err)
	}
	for _, k := range []string{"k2", "k3"} {
		r := ok
		r.Key = k
		_, err = l.Decide(context.Background(), r)
	}
	if !errors.Is(err, ErrOverloaded) {
		t.Errorf("third key with MaxKeys 2: error %v, want ErrOverloaded", err)
	}
}

// TestSingleNodeMatchesModel compares one node's decisions with a naive
// model that keeps every admitted request and counts them per window.
func TestSingleNodeMatchesModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		clock := newFakeClock(minute0.Add(time.Duration(rapid.Int64Range(0, int64(time.Hour)).Draw(rt, "start"))))
		l, err := New(Config{Membership: Single("solo"), Now: clock.Now, LeaseTimeout: time.Second, SweepInterval: time.Hour, MaxKeys: 10})
		if err != nil {
			rt.Fatal(err)
		}
		defer l.Close()
		w := time.Duration(rapid.Int64Range(int64(time.Millisecond), int64(time.Minute)).Draw(rt, "window"))
		limit := rapid.Int64Range(1, 50).Draw(rt, "limit")
		type event struct {
			at   time.Time
			cost int64
		}
		var log []event
		for i := range rapid.IntRange(1, 200).Draw(rt, "steps") {
			clock.Advance(time.Duration(rapid.Int64Range(0, int64(w)*5/2).Draw(rt, "advance")) / 10)
			cost := rapid.Int64Range(1, limit).Draw(rt, "cost")
			now := clock.Now()
			id, elapsed := windowAt(now, w)
			var curr, prev int64
			for _, e := range log {
				switch eid, _ := windowAt(e.at, w); eid {
				case id:
					curr += e.cost
				case id - 1:
					prev += e.cost
				}
			}
			est := float64(prev)*(1-float64(elapsed)/float64(w)) + float64(curr)
			want := est+float64(cost) <= float64(limit)
			d, err := l.Decide(context.Background(), Request{NS: "n", Key: "k", Limit: limit, Window: w, Cost: cost})
			if err != nil {
				rt.Fatal(err)
			}
			if d.Allowed != want {
				rt.Fatalf("step %d: allowed %v, model says %v (prev %d, curr %d, elapsed %v of %v, cost %d, limit %d)",
					i, d.Allowed, want, prev, curr, elapsed, w, cost, limit)
			}
			if d.Allowed {
				log = append(log, event{now, cost})
			} else if d.RetryAfter <= 0 {
				rt.Fatalf("step %d: refused with no Retry-After", i)
			}
			if d.Reset != w-elapsed {
				rt.Fatalf("reset %v, want %v", d.Reset, w-elapsed)
			}
		}
	})
}

// estimateAt is the estimate at offset x from the start of the current
// window, when nothing more is taken.
func estimateAt(prev, curr int64, x, w time.Duration) float64 {
	switch {
	case x < w:
		return estimate(prev, curr, x, w)
	case x < 2*w:
		return estimate(curr, 0, x-w, w)
	}
	return 0
}

// TestRetryAfter: after RetryAfter the cost fits; a microsecond before, it
// does not.
func TestRetryAfter(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		w := time.Duration(rapid.Int64Range(int64(time.Millisecond), int64(time.Hour)).Draw(rt, "window"))
		limit := rapid.Int64Range(1, 1_000_000).Draw(rt, "limit")
		cost := rapid.Int64Range(1, limit).Draw(rt, "cost")
		prev := rapid.Int64Range(0, limit).Draw(rt, "prev")
		curr := rapid.Int64Range(0, limit).Draw(rt, "curr")
		elapsed := time.Duration(rapid.Int64Range(0, int64(w)-1).Draw(rt, "elapsed"))
		if fits(estimate(prev, curr, elapsed, w), cost, limit) {
			return
		}
		d := retryAfter(prev, curr, elapsed, w, cost, limit)
		if d <= 0 {
			rt.Fatalf("retry %v for a request that does not fit", d)
		}
		tol := 1e-6 * float64(limit)
		if est := estimateAt(prev, curr, elapsed+d, w); est+float64(cost) > float64(limit)+tol {
			rt.Fatalf("after %v the estimate is %.4f: cost %d still does not fit under %d", d, est, cost, limit)
		}
		if d > time.Microsecond {
			if est := estimateAt(prev, curr, elapsed+d-time.Microsecond, w); est+float64(cost) < float64(limit)-tol {
				rt.Fatalf("already fits %v before the retry time %v (estimate %.4f)", time.Microsecond, d, est)
			}
		}
	})
}

// TestMemoryPerLimit measures the heap held per limit on its owner (about
// 440 bytes plus the key, docs/ratelimit.md) and fails past 1 KiB.
func TestMemoryPerLimit(t *testing.T) {
	l, err := New(Config{Membership: Single("solo"), LeaseTimeout: time.Second, SweepInterval: time.Hour, MaxKeys: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	keys := make([]string, 100_000)
	for i := range keys {
		keys[i] = fmt.Sprintf("user:%08d", i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, k := range keys {
		if _, err := l.Decide(context.Background(), Request{NS: "api", Key: k, Limit: 100, Window: time.Minute, Cost: 1}); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / float64(len(keys))
	t.Logf("%.0f bytes per limit (keys not counted)", per)
	if per > 1024 {
		t.Errorf("%.0f bytes per limit, want at most 1 KiB", per)
	}
	runtime.KeepAlive(keys)
}
