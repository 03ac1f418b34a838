package gossip_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/gossip/fakenet"
	"github.com/countmesh/countmesh/gossip/gossiptest"
)

var (
	simClusters  = flag.Int("sim.clusters", 20, "clusters the simulation runs (each with its own seed)")
	simSchedules = flag.Int("sim.schedules", 10, "random schedules each simulated cluster runs, one after another")
	simSeed      = flag.Uint64("sim.seed", 0, "run only the cluster with this seed (0: all)")
)

// keyModel is the reference for one counter: the total of every node's
// increments and decrements, and every reset record issued.
type keyModel struct {
	p, n   map[crdt.NodeID]uint64
	resets []*crdt.Reset
}

// expect is the value every replica must read once all operations have
// reached it: without resets the sum of the operations; with resets the
// winning reset's value plus every operation its (merged) floor did not
// observe.
func (k *keyModel) expect() int64 {
	var v int64
	floor := make(map[crdt.NodeID]crdt.Slot)
	if len(k.resets) > 0 {
		w := k.resets[0]
		for _, r := range k.resets {
			if w.Before(r) {
				w = r
			}
			for _, s := range r.Floor {
				f := floor[s.Node]
				floor[s.Node] = crdt.Slot{Node: s.Node, P: max(f.P, s.P), N: max(f.N, s.N)}
			}
		}
		v = w.Value
	}
	for node, p := range k.p {
		v += int64(p - floor[node].P)
	}
	for node, n := range k.n {
		v -= int64(n - floor[node].N)
	}
	return v
}

type model map[gossiptest.Key]*keyModel

func (m model) key(k gossiptest.Key) *keyModel {
	km := m[k]
	if km == nil {
		km = &keyModel{p: make(map[crdt.NodeID]uint64), n: make(map[crdt.NodeID]uint64)}
		m[k] = km
	}
	return km
}

// simStats sums what the schedules did, for the log.
type simStats struct {
	schedules, ops, resets, partitions, crashes, restarts atomic.Int64
	maxConverge                                           atomic.Int64
	dropped, duplicated, resetConns                       atomic.Int64
	sharded                                               atomic.Int64 // clusters with a sharded namespace
}

// TestSimulation runs random schedules on meshes of 5 nodes in 3 regions:
// increments, decrements and resets on random nodes, partitions by region
// and by node set, crashes and graceful stops with restarts under the same
// name, over a network that drops, duplicates and delays packets, delays
// streams and resets connections. After each schedule the network heals
// and every node must converge, within a deadline, to the same state of
// every counter, whose value must equal the reference model's.
func TestSimulation(t *testing.T) {
	var st simStats
	start := time.Now()
	t.Run("clusters", func(t *testing.T) {
		for i := 1; i <= *simClusters; i++ {
			seed := uint64(i)
			if *simSeed != 0 && seed != *simSeed {
				continue
			}
			t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
				t.Parallel()
				simulate(t, seed, *simSchedules, &st)
			})
		}
	})
	if st.sharded.Load() == 0 && *simClusters >= 3 && *simSeed == 0 {
		t.Error("no cluster ran a sharded namespace")
	}
	if st.duplicated.Load() == 0 && *simSeed == 0 {
		t.Errorf("no packet was duplicated in %d schedules: the fault injection did not work", st.schedules.Load())
	}
	t.Logf("%d clusters with a sharded namespace; %d schedules (%d ops, %d resets, %d partitions, %d crashes/stops, %d restarts; %d packets dropped, %d duplicated, %d connections reset) in %v; slowest convergence after a heal %v",
		st.sharded.Load(), st.schedules.Load(), st.ops.Load(), st.resets.Load(), st.partitions.Load(), st.crashes.Load(), st.restarts.Load(),
		st.dropped.Load(), st.duplicated.Load(), st.resetConns.Load(),
		time.Since(start).Round(time.Millisecond), time.Duration(st.maxConverge.Load()).Round(time.Millisecond))
}

func simulate(t *testing.T, seed uint64, schedules int, st *simStats) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	mode := gossip.FanOutBridge
	if seed%4 == 0 {
		mode = gossip.FanOutDirect
	}
	// One seed in three shards "likes" over 1 or 2 nodes per region
	// ("pages" stays on every node): ownership moves with every crash,
	// restart and partition, and after the heal the owners of each counter
	// must hold it whole.
	var replicas func(ns string) int
	if seed%3 == 2 {
		r := 1 + int(seed/3%2)
		replicas = func(ns string) int {
			if ns == "likes" {
				return r
			}
			return 0
		}
	}
	c := newCluster(t, seed, []string{"a1@A", "a2@A", "b1@B", "b2@B", "c1@C"}, func(cfg *gossip.Config) {
		cfg.FanOut = mode
		cfg.Replicas = replicas
	})
	if replicas != nil {
		st.sharded.Add(1)
		for _, n := range c.nodes {
			n.rep.SetReplicas(replicas)
		}
	}
	holders := func(k gossiptest.Key) []*tnode {
		if replicas == nil || replicas(k.NS) == 0 {
			return c.nodes
		}
		var out []*tnode
		for _, name := range c.ownersWith(k.NS, k.Key, replicas(k.NS)) {
			out = append(out, c.node(name))
		}
		return out
	}
	c.startAll()
	m := make(model)
	for s := 0; s < schedules; s++ {
		runSchedule(t, c, rng, m, st)
		var took time.Duration
		if replicas == nil {
			took = c.waitConverged(20 * time.Second)
		} else {
			took = c.waitConvergedAt(holders, 20*time.Second)
		}
		for k, km := range m {
			want := km.expect()
			for _, n := range holders(k) {
				if got := n.rep.Counter(k.NS, k.Key).Value(); got != want {
					c.dump()
					var rs []crdt.Reset
					for _, r := range km.resets {
						rs = append(rs, *r)
					}
					t.Fatalf("seed %d schedule %d: %s reads %v = %d, want %d; state %+v reset %+v; model p %v n %v resets %+v", seed, s, n.name, k, got, want,
						n.rep.Counter(k.NS, k.Key), n.rep.Counter(k.NS, k.Key).Reset, km.p, km.n, rs)
				}
			}
		}
		st.schedules.Add(1)
		for {
			old := st.maxConverge.Load()
			if int64(took) <= old || st.maxConverge.CompareAndSwap(old, int64(took)) {
				break
			}
		}
	}
	// The faults must have happened, or the schedules proved little. A
	// cluster that heals fast sends few packets, so duplicates are checked
	// over the whole simulation (TestSimulation), drops and resets here.
	ns := c.nw.Stats()
	if ns.PacketsDropped == 0 || ns.Resets == 0 {
		t.Fatalf("seed %d: the network misbehaved too little: %+v", seed, ns)
	}
	st.dropped.Add(int64(ns.PacketsDropped))
	st.duplicated.Add(int64(ns.PacketsDuplicated))
	st.resetConns.Add(int64(ns.Resets))
}

func runSchedule(t *testing.T, c *cluster, rng *rand.Rand, m model, st *simStats) {
	t.Helper()
	ms := func(n int) time.Duration { return time.Duration(rng.IntN(n+1)) * time.Millisecond }
	c.nw.SetFaults(fakenet.Faults{
		// Rates with a floor: a schedule that heals fast sends few packets,
		// and every schedule must see each fault.
		PacketDrop:  0.02 + rng.Float64()*0.08,
		PacketDup:   0.01 + rng.Float64()*0.04,
		PacketDelay: ms(4),
		StreamDelay: ms(3),
		StreamReset: rng.Float64() * 0.01,
	})
	regions := []string{"A", "B", "C"}
	var down *tnode
	steps := 5 + rng.IntN(8)
	for step := 0; step < steps; step++ {
		switch r := rng.Float64(); {
		case r < 0.12:
			// A random region against the other two, or all three apart.
			if rng.IntN(3) == 0 {
				c.nw.PartitionRegions([]string{"A"}, []string{"B"}, []string{"C"})
			} else {
				i := rng.IntN(3)
				c.nw.PartitionRegions([]string{regions[i]})
			}
			st.partitions.Add(1)
		case r < 0.22:
			var side []string
			for _, n := range c.nodes {
				if rng.IntN(2) == 0 {
					side = append(side, n.name)
				}
			}
			c.nw.Partition(side)
			st.partitions.Add(1)
		case r < 0.34:
			c.nw.Heal()
		case r < 0.38 && down == nil:
			down = c.nodes[rng.IntN(len(c.nodes))]
			c.stop(down, rng.IntN(2) == 0)
			st.crashes.Add(1)
		case r < 0.46 && down != nil:
			c.restart(down)
			down = nil
			st.restarts.Add(1)
		}
		run := c.running()
		for range 1 + rng.IntN(6) {
			n := run[rng.IntN(len(run))]
			k := gossiptest.Key{NS: []string{"pages", "likes"}[rng.IntN(2)], Key: fmt.Sprintf("k%d", rng.IntN(6))}
			km := m.key(k)
			if rng.IntN(12) == 0 {
				d, rec := n.rep.Reset(k.NS, k.Key, int64(rng.IntN(100)))
				km.resets = append(km.resets, rec)
				n.com.Add(d)
				st.resets.Add(1)
			} else {
				by := int64(rng.IntN(13)) - 3
				d, err := n.rep.Add(k.NS, k.Key, by)
				if err != nil {
					t.Fatalf("add: %v", err)
				}
				if by >= 0 {
					km.p[n.rep.Self()] += uint64(by)
				} else {
					km.n[n.rep.Self()] += uint64(-by)
				}
				n.com.Add(d)
			}
			st.ops.Add(1)
		}
		for _, n := range run {
			n.com.Commit()
		}
		// Let the network and the timers move between steps; the
		// interleavings this creates are the point of the schedule.
		time.Sleep(ms(10))
	}
	if down != nil {
		c.restart(down)
		st.restarts.Add(1)
	}
	c.nw.Heal()
	// Faults stay on, milder: convergence must not need a perfect network.
	c.nw.SetFaults(fakenet.Faults{PacketDrop: 0.02, PacketDup: 0.02, PacketDelay: ms(2), StreamDelay: ms(2), StreamReset: 0.002})
}
