package gossip_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/gossip/fakenet"
	"github.com/countmesh/countmesh/gossip/gossiptest"
)

// tnode is one node of a test cluster: a fake host, a replica (its "disk",
// which survives restarts) and the mesh running on them.
type tnode struct {
	name, region string
	host         *fakenet.Host
	rep          *gossiptest.Replica
	mesh         *gossip.Mesh // nil while stopped
	com          *gossiptest.Committer
}

// cluster is a set of nodes on one fake network.
type cluster struct {
	t      testing.TB
	nw     *fakenet.Network
	nodes  []*tnode
	tune   func(*gossip.Config)
	logger *zap.Logger
	seed   uint64
}

// spec is "name@region".
func newCluster(t testing.TB, seed uint64, specs []string, tune func(*gossip.Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, nw: fakenet.New(seed, 0), tune: tune, seed: seed}
	c.logger = testLogger(t)
	for _, s := range specs {
		name, region, _ := strings.Cut(s, "@")
		n := &tnode{name: name, region: region, host: c.nw.Host(name, region), rep: gossiptest.NewReplica(crdt.NodeIDFromName(name))}
		c.nodes = append(c.nodes, n)
	}
	t.Cleanup(c.closeAll)
	return c
}

// testLogger logs warnings and above through t until the test's cleanup,
// then nothing: memberlist's goroutines may still log after Shutdown
// returns (it does not wait for them), and t must not be used by then.
func testLogger(t testing.TB) *zap.Logger {
	g := &gate{}
	t.Cleanup(g.close) // registered first, so it runs last
	l := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel), zaptest.WrapOptions(zap.AddStacktrace(zap.DPanicLevel)))
	return zap.New(&gatedCore{Core: l.Core(), gate: g})
}

// gate is closed once; writes in progress finish before close returns.
type gate struct {
	mu     sync.RWMutex // held for reading by writes, for writing by close
	closed bool
}

func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
}

// gatedCore drops every entry once its gate is closed.
type gatedCore struct {
	zapcore.Core
	gate *gate
}

func (g *gatedCore) With(fs []zapcore.Field) zapcore.Core {
	return &gatedCore{Core: g.Core.With(fs), gate: g.gate}
}

func (g *gatedCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if !g.Enabled(e.Level) {
		return ce
	}
	return ce.AddCore(e, g)
}

func (g *gatedCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	g.gate.mu.RLock()
	defer g.gate.mu.RUnlock()
	if g.gate.closed {
		return nil
	}
	return g.Core.Write(e, fs)
}

// fastConfig is a config with timings for tests: 10 ms flushes, 100 ms
// anti-entropy, failure detection in about half a second.
func fastConfig(name, region string, h *fakenet.Host) gossip.Config {
	cfg := gossip.DefaultConfig()
	cfg.Name, cfg.Region = name, region
	cfg.HTTPAddr = "http://" + name + ":7070"
	cfg.GossipAddr = h.GossipAddr()
	cfg.ReplAddr = h.ReplAddr()
	cfg.Network = h
	cfg.FlushInterval = 10 * time.Millisecond
	cfg.AntiEntropyInterval = 100 * time.Millisecond
	cfg.AntiEntropyGrace = 60 * time.Millisecond
	cfg.ReconnectInterval = 50 * time.Millisecond
	cfg.IOTimeout = 2 * time.Second
	cfg.DialTimeout = 200 * time.Millisecond
	cfg.LeaveTimeout = 300 * time.Millisecond
	// Failure detection within about half a second, forgiving enough that
	// a CPU-starved test machine (race detector, parallel packages) does not
	// declare healthy nodes dead.
	cfg.Membership = gossip.Membership{
		ProbeInterval:           100 * time.Millisecond,
		ProbeTimeout:            50 * time.Millisecond,
		IndirectChecks:          2,
		SuspicionMult:           3,
		SuspicionMaxTimeoutMult: 3,
		GossipInterval:          20 * time.Millisecond,
		GossipNodes:             3,
		RetransmitMult:          3,
		PushPullInterval:        500 * time.Millisecond,
		TCPTimeout:              500 * time.Millisecond,
		GossipToTheDeadTime:     500 * time.Millisecond,
		DeadNodeReclaimTime:     100 * time.Millisecond,
		// Compression costs CPU that the race detector multiplies.
		Tune: func(mc *memberlist.Config) { mc.EnableCompression = false },
	}
	return cfg
}

func (c *cluster) node(name string) *tnode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node %q", name)
	return nil
}

// start runs a new mesh on n (a fresh memberlist transport on its host).
func (c *cluster) start(n *tnode) {
	c.t.Helper()
	cfg := fastConfig(n.name, n.region, n.host)
	cfg.Transport = n.host.NewTransport()
	cfg.Logger = c.logger
	cfg.Seed = c.seed*131 + uint64(len(n.name))*7 + 1
	if c.tune != nil {
		c.tune(&cfg)
	}
	m, err := gossip.New(cfg, n.rep)
	if err != nil {
		c.t.Fatalf("new %s: %v", n.name, err)
	}
	if err := m.Start(); err != nil {
		c.t.Fatalf("start %s: %v", n.name, err)
	}
	n.mesh = m
	n.com = &gossiptest.Committer{Replica: n.rep, Publish: m.Publish}
}

// startAll starts every node and joins each to the first.
func (c *cluster) startAll() {
	c.t.Helper()
	for _, n := range c.nodes {
		c.start(n)
	}
	for _, n := range c.nodes[1:] {
		if _, err := n.mesh.Join([]string{c.nodes[0].host.GossipAddr()}); err != nil {
			c.t.Fatalf("join %s: %v", n.name, err)
		}
	}
	c.waitMembership(10 * time.Second)
}

// running returns the nodes whose mesh runs.
func (c *cluster) running() []*tnode {
	var out []*tnode
	for _, n := range c.nodes {
		if n.mesh != nil {
			out = append(out, n)
		}
	}
	return out
}

// waitMembership waits until every running node sees every other running
// node alive.
func (c *cluster) waitMembership(timeout time.Duration) {
	c.t.Helper()
	run := c.running()
	meshes := make([]*gossip.Mesh, len(run))
	for i, n := range run {
		meshes[i] = n.mesh
	}
	ok := gossiptest.WaitFor(timeout, func() bool { return gossiptest.AllAlive(meshes) })
	if !ok {
		for _, n := range run {
			c.t.Logf("%s sees %+v", n.name, n.mesh.Status().Members)
		}
		c.t.Fatalf("membership did not converge within %v", timeout)
	}
}

// stop closes n's mesh; with crash the host first drops off the network,
// so nothing is flushed and no leave is heard.
func (c *cluster) stop(n *tnode, crash bool) {
	if n.mesh == nil {
		return
	}
	if crash {
		n.host.Down()
	}
	n.mesh.Close()
	n.mesh = nil
	if crash {
		n.host.Up()
	}
}

// restart starts n again under the same name and joins the others, then
// runs SyncOnce as the node does before it reports ready.
func (c *cluster) restart(n *tnode) {
	c.t.Helper()
	c.start(n)
	var addrs []string
	for _, o := range c.nodes {
		if o != n {
			addrs = append(addrs, o.host.GossipAddr())
		}
	}
	n.mesh.Join(addrs) // may fail while partitioned; the reconnect loop retries
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n.mesh.SyncOnce(ctx)
}

// closeAll closes every running mesh, all at once (each waits a little
// for its leave to be broadcast).
func (c *cluster) closeAll() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if m := n.mesh; m != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.Close()
			}()
			n.mesh = nil
		}
	}
	wg.Wait()
}

// converged reports whether every node holds the same state of every
// counter, and describes the first difference. It takes one snapshot per
// node and compares those: with no new operations, states only grow
// towards the join of all of them, so equal snapshots (however far apart
// in time) mean nothing is left in flight. (Comparing each node with a
// fresh snapshot of the first would not: the first may move between the
// comparisons.)
func (c *cluster) converged() (bool, string) {
	snaps := make([]map[gossiptest.Key]crdt.Counter, len(c.nodes))
	for i, n := range c.nodes {
		snaps[i] = n.rep.Snapshot()
	}
	for i := 1; i < len(snaps); i++ {
		if k, ok := firstDifference(snaps[0], snaps[i]); !ok {
			return false, fmt.Sprintf("%s and %s differ on %v: %+v vs %+v", c.nodes[0].name, c.nodes[i].name, k, snaps[0][k], snaps[i][k])
		}
	}
	return true, ""
}

func firstDifference(a, b map[gossiptest.Key]crdt.Counter) (gossiptest.Key, bool) {
	for k, ca := range a {
		if cb, ok := b[k]; !ok || !ca.Equal(cb) {
			return k, false
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			return k, false
		}
	}
	return gossiptest.Key{}, true
}

// convergedAt is converged for counters that only some nodes hold: every
// node holders(k) names holds the join of every node's state of k (so
// nothing any node holds, a writer that owns nothing included, is still
// on its way to them).
func (c *cluster) convergedAt(holders func(gossiptest.Key) []*tnode) (bool, string) {
	snaps := make(map[*tnode]map[gossiptest.Key]crdt.Counter, len(c.nodes))
	joined := make(map[gossiptest.Key]crdt.Counter)
	for _, n := range c.nodes {
		snaps[n] = n.rep.Snapshot()
		for k, st := range snaps[n] {
			j := joined[k].Clone()
			j.Merge(st)
			joined[k] = j
		}
	}
	for k, want := range joined {
		for _, h := range holders(k) {
			if got, ok := snaps[h][k]; !ok || !got.Equal(want) {
				return false, fmt.Sprintf("%s holds %v as %+v, not the join of every node's %+v", h.name, k, got, want)
			}
		}
	}
	return true, ""
}

// waitConvergedAt waits until convergedAt or fails the test.
func (c *cluster) waitConvergedAt(holders func(gossiptest.Key) []*tnode, timeout time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	var why string
	if !gossiptest.WaitFor(timeout, func() bool {
		var ok bool
		ok, why = c.convergedAt(holders)
		return ok
	}) {
		c.dump()
		c.t.Fatalf("not converged after %v: %s", timeout, why)
	}
	return time.Since(start)
}

// waitConverged waits until converged or fails the test.
func (c *cluster) waitConverged(timeout time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	var why string
	ok := gossiptest.WaitFor(timeout, func() bool {
		var ok bool
		ok, why = c.converged()
		return ok
	})
	if !ok {
		c.dump()
		c.t.Fatalf("not converged after %v: %s", timeout, why)
	}
	return time.Since(start)
}

func (c *cluster) dump() {
	for _, n := range c.nodes {
		if n.mesh == nil {
			c.t.Logf("%s: stopped; vv %v", n.name, n.rep.VersionVector())
			continue
		}
		st := n.mesh.Status()
		var ms []string
		for _, m := range st.Members {
			ms = append(ms, m.Name+":"+m.State)
		}
		c.t.Logf("%s: members %v repl %+v vv %v stats %+v", n.name, ms, st.Replication, n.rep.VersionVector(), n.mesh.Stats())
	}
}

// names returns the names of nodes in region r.
func (c *cluster) names(region string) []string {
	var out []string
	for _, n := range c.nodes {
		if n.region == region {
			out = append(out, n.name)
		}
	}
	slices.Sort(out)
	return out
}

// add changes n's own slot of ns/key and commits it at once.
func (c *cluster) add(n *tnode, ns, key string, by int64) {
	c.t.Helper()
	d, err := n.rep.Add(ns, key, by)
	if err != nil {
		c.t.Fatalf("add: %v", err)
	}
	n.com.Add(d)
	n.com.Commit()
}
