package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/internal/wait"
)

func TestIDsCountOnceOnOneNode(t *testing.T) {
	fs := vfs.NewMem()
	cfg := testConfig(t, fs)
	n := openTest(t, cfg)
	ctx := context.Background()
	r, err := n.Incr(ctx, "likes", "p1", 1, WriteOptions{ID: "u1"})
	if err != nil || r.Value != 1 || r.Duplicate {
		t.Fatalf("first: %+v %v", r, err)
	}
	r, err = n.Incr(ctx, "likes", "p1", 1, WriteOptions{ID: "u1"})
	if err != nil || r.Value != 1 || !r.Duplicate {
		t.Fatalf("retry: %+v %v, want duplicate at 1", r, err)
	}
	if _, err := n.Incr(ctx, "likes", "p1", 2, WriteOptions{ID: "u1"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("same id, other by: %v, want ErrConflict", err)
	}
	if _, err := n.Incr(ctx, "likes", "p2", 1, WriteOptions{ID: "u1"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("same id, other key (not yet in the store): %v, want ErrConflict", err)
	}
	if err := n.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if err := n.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Incr(ctx, "likes", "p3", 1, WriteOptions{ID: "u1"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("same id, other key (in the store): %v, want ErrConflict", err)
	}
	// A decrement is a different body.
	if _, err := n.Incr(ctx, "likes", "p1", -1, WriteOptions{ID: "u1"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("same id as a decrement: %v, want ErrConflict", err)
	}
	// The id is scoped to the namespace.
	if r, err := n.Incr(ctx, "votes", "p1", 1, WriteOptions{ID: "u1"}); err != nil || r.Duplicate {
		t.Fatalf("same id in another namespace: %+v %v", r, err)
	}
	// Batches: a known id, a repeat inside the batch, a new id.
	res, err := n.Batch(ctx, []BatchOp{
		{NS: "likes", Key: "p1", By: 1, ID: "u1"},
		{NS: "likes", Key: "p1", By: 1, ID: "u2"},
		{NS: "likes", Key: "p1", By: 1, ID: "u2"},
		{NS: "likes", Key: "p1", By: 5},
	}, "", true)
	if err != nil || res.Applied != 2 || res.Duplicates != 2 || res.Values[3] != 7 {
		t.Fatalf("batch: %+v %v, want 2 applied, 2 duplicates, p1 = 7", res, err)
	}
	if _, err := n.Batch(ctx, []BatchOp{{NS: "likes", Key: "p1", By: 1, ID: "u3"}, {NS: "likes", Key: "p9", By: 1, ID: "u3"}}, "", false); !errors.Is(err, ErrConflict) {
		t.Fatalf("batch reusing an id for another key: %v", err)
	}
	if got := mustGet(t, n, "likes", "p1"); got != 7 {
		t.Fatalf("p1 = %d, want 7", got)
	}
	// A restart remembers the ids.
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = openTest(t, cfg)
	if r, err := n.Incr(ctx, "likes", "p1", 1, WriteOptions{ID: "u2"}); err != nil || !r.Duplicate || r.Value != 7 {
		t.Fatalf("retry after restart: %+v %v", r, err)
	}
	if _, err := n.Incr(ctx, "likes", "p1", 1, WriteOptions{ID: string(make([]byte, 300))}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("a 300-byte id: %v", err)
	}
}

// TestConcurrentRetriesOnTwoNodesCountOnce: the same id applied on two
// nodes before either heard of the other is counted once after they meet,
// however often the records are exchanged; id records expire after the
// window, and an expired copy from a peer is not taken back in.
func TestConcurrentRetriesOnTwoNodesCountOnce(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)}
	a, b := clock.open(t, "a"), clock.open(t, "b")
	ctx := context.Background()
	if _, err := a.PutNamespace(ctx, "likes", NamespacePatch{IdempotencyWindow: ptr("1h")}); err != nil {
		t.Fatal(err)
	}
	antiEntropy(t, a, b)
	for i := range 20 {
		id := fmt.Sprintf("u%d", i)
		if _, err := a.Incr(ctx, "likes", "p", 3, WriteOptions{ID: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Incr(ctx, "likes", "p", 3, WriteOptions{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Incr(ctx, "likes", "p", 1, WriteOptions{ID: "only-b"}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		for _, x := range []*Node{a, b} {
			if err := x.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		antiEntropy(t, a, b)
		antiEntropy(t, b, a)
	}
	for _, x := range []*Node{a, b} {
		if got := mustGet(t, x, "likes", "p"); got != 61 {
			t.Fatalf("%s reads %d, want 61 (20 ids x 3 once, plus 1)", x.Name(), got)
		}
	}
	// A retry now is a duplicate on both.
	for _, x := range []*Node{a, b} {
		if r, err := x.Incr(ctx, "likes", "p", 3, WriteOptions{ID: "u7"}); err != nil || !r.Duplicate {
			t.Fatalf("%s: retry of u7: %+v %v", x.Name(), r, err)
		}
	}
	// Two hours on the records are gone, and a's copy resent to b stays out.
	clock.Set(clock.Now().Add(2 * time.Hour))
	if err := b.DropExpired(ctx); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := b.rep.CounterState("likes", idKey("u7", "p")); found {
		t.Fatal("b still holds the id record of u7 after its window")
	}
	resendAll(t, a, b)
	if _, found, _ := b.rep.CounterState("likes", idKey("u7", "p")); found {
		t.Fatal("an expired id record came back from a")
	}
	if got := mustGet(t, b, "likes", "p"); got != 61 {
		t.Fatalf("b reads %d after expiry, want 61", got)
	}
}

// meshSim connects in-process nodes: each node's committed changes are
// applied on every other live node, in the background.
type meshSim struct {
	t      *testing.T
	mu     sync.RWMutex
	nodes  map[string]*Node
	cutOff string   // a node cut off from the others, or ""
	calls  sync.Map // name -> *sync.WaitGroup of callers inside the node
	queue  map[string]chan change.Batch
	wg     sync.WaitGroup
}

// cut cuts name off from the other nodes (streams and rights); heal ends it.
func (m *meshSim) cut(name string) { m.mu.Lock(); m.cutOff = name; m.mu.Unlock() }
func (m *meshSim) heal()           { m.cut("") }

func (m *meshSim) isCut(a, b string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.cutOff != "" && a != b && (a == m.cutOff || b == m.cutOff)
}

func newMeshSim(t *testing.T, names []string) *meshSim {
	m := &meshSim{t: t, nodes: map[string]*Node{}, queue: map[string]chan change.Batch{}}
	for _, name := range names {
		q := make(chan change.Batch, 4096)
		m.queue[name] = q
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			for b := range q {
				m.mu.RLock()
				n := m.nodes[name]
				m.mu.RUnlock()
				if n != nil {
					_ = n.Replica().Apply(b) // a node closed under us fails; anti-entropy repairs
				}
			}
		}()
	}
	return m
}

type simPublisher struct {
	m    *meshSim
	from string
}

func (p simPublisher) Publish(b change.Batch) {
	for name, q := range p.m.queue {
		if name == p.from || p.m.isCut(p.from, name) {
			continue
		}
		select {
		case q <- b:
		default: // a full queue drops; anti-entropy repairs
		}
	}
}

func (m *meshSim) set(name string, n *Node) {
	m.mu.Lock()
	m.nodes[name] = n
	m.mu.Unlock()
	if n != nil {
		n.SetPublisher(simPublisher{m, name})
	}
}

// acquire returns the live node name and a func to call when done with
// it; drain waits until no caller holds name.
func (m *meshSim) acquire(name string) (*Node, func()) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := m.nodes[name]
	if n == nil {
		return nil, func() {}
	}
	wg := m.inflight(name)
	wg.Add(1)
	return n, wg.Done
}

func (m *meshSim) drain(name string) { m.inflight(name).Wait() }

func (m *meshSim) inflight(name string) *sync.WaitGroup {
	v, _ := m.calls.LoadOrStore(name, new(sync.WaitGroup))
	return v.(*sync.WaitGroup)
}

func (m *meshSim) get(name string) *Node {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.nodes[name]
}

func (m *meshSim) close() {
	for _, q := range m.queue {
		close(q)
	}
	m.wg.Wait()
}

// TestLargeRetriedIncrementsCountOnce checks that retried ids count once
// at the node level: 10,000 increments with ids, each sent 2 to 4 times to
// random nodes of a five-node mesh (answers "lost"), one node killed (a
// crash image of its disk) and restarted mid-run; afterwards every node
// reads exactly the sum of the distinct ids.
func TestLargeRetriedIncrementsCountOnce(t *testing.T) {
	names := []string{"r1-a", "r1-b", "r2-a", "r2-b", "r3-a"}
	m := newMeshSim(t, names)
	fss := map[string]*vfs.MemFS{}
	cfgs := map[string]Config{}
	for _, name := range names {
		fss[name] = vfs.NewCrashableMem()
		cfg := testConfig(t, fss[name])
		cfg.Name, cfg.Logger = name, nil
		cfg.Peers = simPeers{names: names, regions: make([]string, len(names))} // members accept each other's slots
		cfgs[name] = cfg
		n, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		m.set(name, n)
	}
	defer func() {
		m.close()
		for _, name := range names {
			if n := m.get(name); n != nil {
				n.Close()
			}
		}
	}()
	ctx := context.Background()
	const ids = 10_000
	var want atomic.Int64
	var next atomic.Int64
	var attempts, dups atomic.Int64
	var wg sync.WaitGroup
	killed := make(chan struct{})
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			for {
				i := next.Add(1) - 1
				if i >= ids {
					return
				}
				if i == ids/2 && w >= 0 {
					<-killed // half-way: wait for the kill below
				}
				id := fmt.Sprintf("req-%05d", i)
				by := rng.Int64N(5) + 1
				want.Add(by)
				sends := 2 + rng.IntN(3)
				acked := false
				deadline := time.Now().Add(20 * time.Second)
				for s := 0; s < sends || !acked; s++ {
					if time.Now().After(deadline) {
						t.Errorf("%s: never acknowledged", id)
						return
					}
					n, done := m.acquire(names[rng.IntN(len(names))])
					if n == nil {
						continue
					}
					attempts.Add(1)
					r, err := n.Incr(ctx, "likes", "post", by, WriteOptions{ID: id})
					done()
					if err == nil {
						acked = true
						if r.Duplicate {
							dups.Add(1)
						}
					}
				}
			}
		}()
	}
	// Kill r2-a a quarter of the way in: a crash image of its disk, then a
	// restart that catches up from a peer before it takes writes.
	wait.For(t, time.Minute, "a quarter of the ids to be sent", func() (bool, string) { return next.Load() >= ids/4, "" })
	victim := "r2-a"
	old := m.get(victim)
	old.SetPublisher(nil)
	// The crash image is taken once no call is inside the old node: every
	// answer it gave is in the image, as with a real kill, where a process
	// answers nothing after it.
	m.set(victim, nil)
	m.drain(victim)
	crashed := fss[victim].CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	old.Close()
	cfg := cfgs[victim]
	cfg.Store.FS = crashed
	cfg.StartUnready = true
	fss[victim] = crashed
	restarted, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	antiEntropy(t, m.get("r2-b"), restarted)
	restarted.MarkReady()
	m.set(victim, restarted)
	close(killed)
	wg.Wait()
	if t.Failed() {
		return
	}
	// Every change committed, then full anti-entropy rounds: they bring
	// every node every change (and id record) whatever the streams still
	// carry, and a stream delivery arriving later merges nothing new.
	for _, name := range names {
		if err := m.get(name).Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		for _, a := range names {
			for _, b := range names {
				if a != b {
					antiEntropy(t, m.get(a), m.get(b))
				}
			}
		}
		for _, name := range names {
			if err := m.get(name).Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("%d ids, %d attempts, %d answered as duplicates, want %d", ids, attempts.Load(), dups.Load(), want.Load())
	for _, name := range names {
		if got := mustGet(t, m.get(name), "likes", "post"); got != want.Load() {
			t.Errorf("%s reads %d, want exactly %d", name, got, want.Load())
		}
	}
}

// TestTakeBackWaitsForTheWholeBatch: another node's id record can come
// before its counter in one batch (anti-entropy sends changes in sequence
// order, and the winner changed the counter again after the id). The loser
// takes its copy back only once the whole batch is merged, so its count
// never drops below what it acknowledged; until then it may show both
// copies, which docs/exact.md allows until the records meet.
func TestTakeBackWaitsForTheWholeBatch(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)}
	win, lose := clock.open(t, "a"), clock.open(t, "b")
	if lose.ID() < win.ID() {
		win, lose = lose, win // the smallest id keeps its application
	}
	ctx := context.Background()
	if _, err := win.PutNamespace(ctx, "likes", NamespacePatch{IdempotencyWindow: ptr("1h")}); err != nil {
		t.Fatal(err)
	}
	antiEntropy(t, win, lose)
	if r, err := lose.Incr(ctx, "likes", "p", 3, WriteOptions{ID: "u"}); err != nil || r.Value != 3 {
		t.Fatalf("loser's increment: %+v %v", r, err)
	}
	if _, err := win.Incr(ctx, "likes", "p", 3, WriteOptions{ID: "u"}); err != nil {
		t.Fatal(err)
	}
	if _, err := win.Incr(ctx, "likes", "p", 1, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, x := range []*Node{win, lose} {
		if err := x.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var ds []change.Delta
	if err := win.Replica().ScanSince(win.ID(), 0, func(d change.Delta) bool { ds = append(ds, d); return true }); err != nil {
		t.Fatal(err)
	}
	rec := slices.IndexFunc(ds, func(d change.Delta) bool { return d.NS == "likes" && d.Key == idKey("u", "p") })
	ctr := slices.IndexFunc(ds, func(d change.Delta) bool { return d.NS == "likes" && d.Key == "p" })
	if rec < 0 || ctr < 0 || rec > ctr {
		t.Fatalf("the batch does not hold the id record (at %d) before the counter (at %d); the test needs that order", rec, ctr)
	}
	var seen []int64
	obs := func(ns, key string, v int64) {
		if ns == "likes" && key == "p" {
			seen = append(seen, v)
		}
	}
	lose.feed.observe.Store(&obs)
	if err := lose.Replica().Apply(change.Batch{Deltas: ds}); err != nil {
		t.Fatal(err)
	}
	lose.feed.observe.Store(nil)
	if len(seen) == 0 || slices.Min(seen) < 3 {
		t.Fatalf("the loser's count went %v while the batch merged; it acknowledged 3", seen)
	}
	if got := mustGet(t, lose, "likes", "p"); got != 4 {
		t.Fatalf("the loser reads %d, want 4 (the id once, plus 1)", got)
	}
}
