package gossip_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
)

// syntheticReplica holds n counters of one origin without storing them:
// counter i is "key-<i>" with P = i+1, changed at seq i+1.
type syntheticReplica struct {
	origin crdt.NodeID
	n      int
}

func (s *syntheticReplica) Apply(gossip.Batch) error { return nil }

func (s *syntheticReplica) VersionVector() map[crdt.NodeID]uint64 {
	return map[crdt.NodeID]uint64{s.origin: uint64(s.n)}
}

func (s *syntheticReplica) HeldAhead() map[crdt.NodeID][]uint64 { return nil }

func (s *syntheticReplica) ScanSince(origin crdt.NodeID, after uint64, fn func(gossip.Delta) bool) error {
	if origin != s.origin {
		return nil
	}
	for i := after; i < uint64(s.n); i++ {
		d := gossip.Delta{NS: "ns", Key: "key-" + strconv.FormatUint(i, 10), Origin: origin, Seq: i + 1,
			State: crdt.Counter{Slots: []crdt.Slot{{Node: origin, P: i + 1}}}}
		if !fn(d) {
			break
		}
	}
	return nil
}

func (s *syntheticReplica) Configs() []gossip.ConfigRecord { return nil }

// countingReplica checks and counts what it receives instead of storing it.
type countingReplica struct {
	mu      sync.Mutex // guards the fields below
	seen    []bool     // by key index
	got     int
	vv      map[crdt.NodeID]uint64
	batches int
	bad     error
}

func (c *countingReplica) Apply(b gossip.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batches++
	for _, d := range b.Deltas {
		i, err := strconv.Atoi(d.Key[len("key-"):])
		if err != nil || i >= len(c.seen) || d.State.Slot(d.Origin).P != uint64(i)+1 || d.Seq != uint64(i)+1 {
			c.bad = fmt.Errorf("unexpected delta %+v", d)
			continue
		}
		if !c.seen[i] {
			c.seen[i] = true
			c.got++
		}
	}
	for _, r := range b.Ranges {
		if c.vv[r.Origin] >= r.After && r.Upto > c.vv[r.Origin] {
			c.vv[r.Origin] = r.Upto
		}
	}
	return nil
}

func (c *countingReplica) HeldAhead() map[crdt.NodeID][]uint64 { return nil }

func (c *countingReplica) VersionVector() map[crdt.NodeID]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[crdt.NodeID]uint64, len(c.vv))
	for k, v := range c.vv {
		out[k] = v
	}
	return out
}

func (c *countingReplica) ScanSince(crdt.NodeID, uint64, func(gossip.Delta) bool) error { return nil }
func (c *countingReplica) Configs() []gossip.ConfigRecord                               { return nil }

// TestNewNodeCatchesUpOnAMillionCounters checks that SyncOnce moves a
// million counters to a new node in bounded frames, with the vector
// advancing chunk by chunk.
func TestNewNodeCatchesUpOnAMillionCounters(t *testing.T) {
	n := 1_000_000
	if raceEnabled || testing.Short() {
		n = 100_000 // the race detector makes encoding ~10x slower
	}
	c := newCluster(t, 99, []string{"old@A", "new@B"}, nil)
	old, fresh := c.nodes[0], c.nodes[1]
	src := &syntheticReplica{origin: crdt.NodeIDFromName("gone"), n: n}
	dst := &countingReplica{seen: make([]bool, n), vv: make(map[crdt.NodeID]uint64)}
	start := func(tn *tnode, r gossip.Replica) *gossip.Mesh {
		cfg := fastConfig(tn.name, tn.region, tn.host)
		cfg.Transport = tn.host.NewTransport()
		cfg.Logger = c.logger
		cfg.AntiEntropyInterval = time.Hour // SyncOnce only
		m, err := gossip.New(cfg, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	mo := start(old, src)
	mn := start(fresh, dst)
	if _, err := mn.Join([]string{old.host.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	var ms0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	begin := time.Now()
	if err := mn.SyncOnce(ctx); err != nil {
		t.Fatalf("SyncOnce: %v", err)
	}
	took := time.Since(begin)
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	dst.mu.Lock()
	defer dst.mu.Unlock()
	if dst.bad != nil {
		t.Fatal(dst.bad)
	}
	if dst.got != n {
		t.Fatalf("new node received %d of %d counters", dst.got, n)
	}
	if got := dst.vv[src.origin]; got != uint64(n) {
		t.Fatalf("new node's vector = %d, want %d", got, n)
	}
	if want := n / gossip.DefaultConfig().MaxFrameDeltas; dst.batches < want {
		t.Fatalf("%d counters arrived in %d batches; want at least %d (10,000 per frame)", n, dst.batches, want)
	}
	st := mo.Stats()
	t.Logf("%d counters in %v over %d frames, %.1f MB (%.1f B per counter); heap grew %.1f MB",
		n, took.Round(time.Millisecond), dst.batches, float64(st.BytesSent)/1e6, float64(st.BytesSent)/float64(n),
		float64(int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc))/1e6)
}
