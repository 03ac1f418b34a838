// Package simulate runs a mesh of in-process nodes over the fake network of
// package gossip/fakenet under a fixed total load, and measures what each
// node pays for replication: changes applied and bytes per second, how long
// a change takes to reach every node, and how many counters each holds.
// countbench --mode simulate runs it for several mesh sizes (issue 13, the
// scale-out simulation; docs/scale.md).
//
// A node here is the replication half of countd: a gossip.Mesh (memberlist
// membership, per-peer streams, per-region bridges, anti-entropy) with its
// production timings, over an in-memory replica (gossiptest.Replica) in
// place of the hot set and Pebble, and a committer that publishes every
// 10 ms. Nodes are spread round-robin over the regions.
//
// With Replicas > 0 the namespace is sharded (gossip.Config.Replicas): each
// counter lives on that many nodes of each region, each node numbers its
// changes per shard, and a probe has converged once every owner of its
// counter holds it. The mesh and the replica are the sharding of package
// gossip, over an in-memory replica in place of countd's storage (docs/scale.md).
package simulate

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/gossip/fakenet"
	"github.com/countmesh/countmesh/gossip/gossiptest"
	"github.com/countmesh/countmesh/internal/wait"
)

// Config is one simulated run.
type Config struct {
	Nodes    int     // mesh size, at least 2
	Regions  int     // regions the nodes are spread over, at least 1
	Replicas int     // nodes per region holding a counter; 0 = every node
	Rate     float64 // changes per second over the whole mesh
	Keys     int     // distinct counters the cold share of the load draws from, uniformly
	HotKeys  int     // counters the hot share draws from
	HotShare float64 // share of the changes that go to the hot counters, 0 to 1
	Duration time.Duration
	// Warmup runs the load this long before Duration without measuring.
	Warmup time.Duration
	// ProbeEvery is how often a probe change (to a counter of its own) is
	// written, whose arrival at every node gives one convergence sample.
	ProbeEvery time.Duration
	// Settle bounds how long Run waits, after the load, for the last
	// probes; a probe that has not reached every node by then counts as
	// unconverged.
	Settle time.Duration
	Seed   uint64
	Logger *zap.Logger // nil: none
}

// Result is what Run measured. The first seven fields are the JSON line the
// issue asks for.
type Result struct {
	Nodes              int     `json:"nodes"`
	Replicas           int     `json:"replicas"`
	AppliedPerNodePerS float64 `json:"applied_per_node_per_s"`
	BytesPerNodePerS   float64 `json:"bytes_per_node_per_s"`
	ConvergenceP50Ms   float64 `json:"convergence_p50_ms"`
	ConvergenceP99Ms   float64 `json:"convergence_p99_ms"`
	CountersPerNode    float64 `json:"counters_per_node"`
	// Changes is how many changes the load made (probes included), and
	// ChangesPerS their rate (below Rate when the machine could not keep
	// up: applied_per_node_per_s is to be read against it); Probes
	// how many convergence samples were taken, Unconverged how many of
	// them had not reached every node when Run gave up on them (their
	// samples count as Settle in the percentiles).
	Changes     int64   `json:"changes"`
	ChangesPerS float64 `json:"changes_per_s"`
	Probes      int     `json:"probes"`
	Unconverged int     `json:"unconverged"`
	// JoinMs is how long the mesh took to see every member alive.
	JoinMs float64 `json:"join_ms"`
	// OwnerShare is the share of the nodes that own a counter, on average
	// over the partitions: 1 under full replication, about
	// replicas*regions/nodes when sharded (less when a region has fewer
	// nodes than replicas). A node applies about OwnerShare of the changes
	// made, plus its own writes to counters it does not own.
	OwnerShare float64 `json:"owner_share"`
	// ViewMisses counts the probes whose writer, when it wrote them, saw
	// other owners than the whole membership gives (its view of the
	// members lagged): those reach the owners it missed by anti-entropy.
	ViewMisses int `json:"view_misses,omitempty"`
}

func (c Config) validate() error {
	switch {
	case c.Replicas < 0:
		return fmt.Errorf("simulate: replicas %d is negative; 0 means every node", c.Replicas)
	case c.Nodes < 2:
		return fmt.Errorf("simulate: %d nodes; want at least 2", c.Nodes)
	case c.Regions < 1 || c.Regions > c.Nodes:
		return fmt.Errorf("simulate: %d regions for %d nodes; want 1 to %d", c.Regions, c.Nodes, c.Nodes)
	case c.Rate <= 0:
		return fmt.Errorf("simulate: rate %v; want more than 0 changes per second", c.Rate)
	case c.Keys < 1 || c.HotKeys < 1:
		return fmt.Errorf("simulate: %d keys and %d hot keys; want at least 1 of each", c.Keys, c.HotKeys)
	case c.HotShare < 0 || c.HotShare > 1:
		return fmt.Errorf("simulate: hot share %v; want 0 to 1", c.HotShare)
	case c.Warmup < 0:
		return fmt.Errorf("simulate: warm-up %v is negative", c.Warmup)
	case c.Duration <= 0 || c.ProbeEvery <= 0 || c.Settle <= 0:
		return fmt.Errorf("simulate: duration %v, probe interval %v and settle %v must be positive", c.Duration, c.ProbeEvery, c.Settle)
	}
	return nil
}

// node is one simulated node.
type node struct {
	name   string
	region string
	host   *fakenet.Host
	rep    *gossiptest.Replica
	mesh   *gossip.Mesh
	com    *gossiptest.Committer
	mu     sync.Mutex // serialises Add+Committer.Add against Commit
}

// write changes key on n by one and queues the change for n's next commit.
func (n *node) write(key string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	d, err := n.rep.Add(ns, key, 1)
	if err != nil {
		return err
	}
	n.com.Add(d)
	return nil
}

func (n *node) commit() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.com.Commit()
}

// ns is the namespace every simulated counter lives in.
const ns = "sim"

// commitEvery is how often each node publishes what it wrote, as the group
// committer does under load.
const commitEvery = 10 * time.Millisecond

// Run builds the mesh, runs the load for cfg.Duration, waits for the last
// probes, and closes the mesh.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	nw := fakenet.New(cfg.Seed, 0)
	nodes := make([]*node, cfg.Nodes)
	for i := range nodes {
		name := fmt.Sprintf("n%03d", i)
		region := fmt.Sprintf("r%d", i%cfg.Regions)
		h := nw.Host(name, region)
		n := &node{name: name, region: region, host: h, rep: gossiptest.NewReplica(crdt.NodeIDFromName(name))}
		gc := gossip.DefaultConfig()
		if cfg.Replicas > 0 {
			gc.Replicas = func(string) int { return cfg.Replicas }
			n.rep.SetReplicas(gc.Replicas)
		}
		gc.Name, gc.Region = name, region
		gc.HTTPAddr = "http://" + name + ":7070"
		gc.GossipAddr, gc.ReplAddr = h.GossipAddr(), h.ReplAddr()
		gc.Network, gc.Transport = h, h.NewTransport()
		gc.Logger = log.Named(name)
		gc.Seed = cfg.Seed*131 + uint64(i)*7 + 1
		// memberlist compresses its membership messages (LZW): a hundred
		// nodes in one process spent 12 % of the machine on it, which the
		// nodes of a real mesh spend on a core each, and it moves no
		// counter. Off, the one process keeps up with the load better.
		gc.Membership.Tune = func(mc *memberlist.Config) { mc.EnableCompression = false }
		m, err := gossip.New(gc, n.rep)
		if err != nil {
			closeAll(nodes)
			return Result{}, fmt.Errorf("simulate: node %s: %w", name, err)
		}
		n.mesh = m
		if err := m.Start(); err != nil {
			n.mesh = nil
			closeAll(nodes)
			return Result{}, fmt.Errorf("simulate: start %s: %w", name, err)
		}
		n.com = &gossiptest.Committer{Replica: n.rep, Publish: m.Publish}
		nodes[i] = n
	}
	defer closeAll(nodes)

	start := time.Now()
	seeds := []string{nodes[0].host.GossipAddr()}
	for _, n := range nodes[1:] {
		if _, err := n.mesh.Join(seeds); err != nil {
			return Result{}, fmt.Errorf("simulate: %s joining %s: %w", n.name, nodes[0].name, err)
		}
	}
	meshes := make([]*gossip.Mesh, len(nodes))
	for i, n := range nodes {
		meshes[i] = n.mesh
	}
	if _, err := wait.Poll(ctx, 60*time.Second, 20*time.Millisecond, func() (bool, string) { return gossiptest.AllAlive(meshes), "" }); err != nil {
		return Result{}, fmt.Errorf("simulate: the %d nodes did not all see each other alive: %w", len(nodes), err)
	}
	res := Result{Nodes: cfg.Nodes, Replicas: cfg.Replicas, JoinMs: ms(time.Since(start))}
	place := newPlacement(nodes, cfg.Replicas)
	res.OwnerShare = place.share()
	log.Info("mesh up", zap.Int("nodes", cfg.Nodes), zap.Duration("took", time.Since(start)))

	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	var changes int64
	var samples []time.Duration
	var pending []probe
	var nextProbe int

	// The load: every commitEvery, the changes due by then at Rate (a tick
	// the machine delays is made up by the next), on random nodes; then
	// every node commits.
	tick := time.NewTicker(commitEvery)
	defer tick.Stop()
	var made int64
	loadStart := time.Now()
	// The warm-up runs the load without measuring: the first changes to
	// each peer open its stream, and the first seconds after a hundred
	// nodes join still carry their membership traffic.
	measuring := cfg.Warmup == 0
	measureStart := loadStart
	lastProbe := loadStart
	before := totals(nodes)
	for time.Since(loadStart) < cfg.Warmup+cfg.Duration {
		select {
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case <-tick.C:
		}
		if !measuring && time.Since(loadStart) >= cfg.Warmup {
			measuring = true
			measureStart = time.Now()
			lastProbe = measureStart
			before = totals(nodes)
			changes = 0
		}
		due := int64(cfg.Rate * time.Since(loadStart).Seconds())
		for ; made < due; made++ {
			key := fmt.Sprintf("k%d", rng.IntN(cfg.Keys))
			if rng.Float64() < cfg.HotShare {
				key = fmt.Sprintf("h%d", rng.IntN(cfg.HotKeys))
			}
			if err := nodes[rng.IntN(len(nodes))].write(key); err != nil {
				return Result{}, fmt.Errorf("simulate: write: %w", err)
			}
			changes++
		}
		if measuring && time.Since(lastProbe) >= cfg.ProbeEvery {
			lastProbe = time.Now()
			p := probe{key: fmt.Sprintf("p%d", nextProbe), at: time.Now()}
			p.owners = place.owners(p.key)
			nextProbe++
			w := nodes[rng.IntN(len(nodes))]
			if cfg.Replicas > 0 && !place.agrees(w, p.key, p.owners) {
				res.ViewMisses++
			}
			if err := w.write(p.key); err != nil {
				return Result{}, fmt.Errorf("simulate: probe: %w", err)
			}
			changes++
			pending = append(pending, p)
		}
		for _, n := range nodes {
			n.commit()
		}
		pending = reap(pending, &samples)
	}
	elapsed := time.Since(measureStart)
	after := totals(nodes)

	// The last probes.
	deadline := time.Now().Add(cfg.Settle)
	for len(pending) > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		pending = reap(pending, &samples)
	}
	res.Unconverged = len(pending)
	for range pending {
		samples = append(samples, cfg.Settle)
	}

	n := float64(len(nodes))
	secs := elapsed.Seconds()
	local := float64(changes)
	res.Changes = changes
	res.ChangesPerS = local / secs
	res.AppliedPerNodePerS = (float64(after.applied-before.applied) + local) / n / secs
	res.BytesPerNodePerS = float64(after.bytes-before.bytes) / n / secs
	var counters int
	for _, nd := range nodes {
		counters += nd.rep.Len()
	}
	res.CountersPerNode = float64(counters) / n
	res.Probes = len(samples)
	if len(samples) > 0 {
		slices.Sort(samples)
		res.ConvergenceP50Ms = ms(quantile(samples, 0.50))
		res.ConvergenceP99Ms = ms(quantile(samples, 0.99))
	}
	return res, nil
}

// probe is a change whose arrival at every owner is awaited.
type probe struct {
	key    string
	at     time.Time
	owners []*node
}

// placement is where the counters live (the membership does not change
// during a run).
type placement struct {
	all      []*node
	regions  map[string][]string
	byName   map[string]*node
	replicas int
}

func newPlacement(nodes []*node, replicas int) *placement {
	p := &placement{all: nodes, regions: make(map[string][]string), byName: make(map[string]*node), replicas: replicas}
	for _, n := range nodes {
		p.regions[n.region] = append(p.regions[n.region], n.name)
		p.byName[n.name] = n
	}
	return p
}

// owners returns the nodes that hold key.
func (p *placement) owners(key string) []*node {
	if p.replicas == 0 {
		return p.all
	}
	s := change.ShardOf(ns, key, p.replicas)
	var out []*node
	for _, names := range p.regions {
		for _, name := range gossip.ShardOwners(s, names) {
			out = append(out, p.byName[name])
		}
	}
	return out
}

// agrees reports whether writer's mesh sees the owners of key that the
// whole membership gives.
func (p *placement) agrees(writer *node, key string, owners []*node) bool {
	var want []string
	for _, o := range owners {
		if o != writer {
			want = append(want, o.name)
		}
	}
	slices.Sort(want)
	return slices.Equal(writer.mesh.ShardPeers(change.ShardOf(ns, key, p.replicas)), want)
}

// share is the mean share of the nodes that own a partition.
func (p *placement) share() float64 {
	if p.replicas == 0 {
		return 1
	}
	owners := 0
	for _, names := range p.regions {
		owners += min(p.replicas, len(names))
	}
	return float64(owners) / float64(len(p.all))
}

// reap records the probes that every owner holds and returns the others.
func reap(pending []probe, samples *[]time.Duration) []probe {
	kept := pending[:0]
	for _, p := range pending {
		everywhere := true
		for _, n := range p.owners {
			if c := n.rep.Counter(ns, p.key); c.Value() < 1 {
				everywhere = false
				break
			}
		}
		if everywhere {
			*samples = append(*samples, time.Since(p.at))
		} else {
			kept = append(kept, p)
		}
	}
	return kept
}

// sums are the mesh-wide counters Run differences.
type sums struct{ applied, bytes uint64 }

// totals adds up the deltas every node received from peers (streams and
// anti-entropy) and the replication bytes every node sent.
func totals(nodes []*node) sums {
	var s sums
	for _, n := range nodes {
		st := n.mesh.Stats()
		s.applied += st.DeltasReceived + st.AntiEntropyDeltasReceived
		s.bytes += st.BytesSent
	}
	return s
}

func closeAll(nodes []*node) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n != nil && n.mesh != nil {
			wg.Go(func() { n.mesh.Close() })
		}
	}
	wg.Wait()
}

// quantile returns the q-quantile of sorted (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted)) + 0.5)
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
