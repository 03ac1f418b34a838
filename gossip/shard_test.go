package gossip_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/gossip/gossiptest"
)

// replicasOf shards namespace "sh" over one node per region and "sh2"
// over two; every other namespace goes to every node.
func replicasOf(ns string) int {
	switch ns {
	case "sh":
		return 1
	case "sh2":
		return 2
	}
	return 0
}

func newShardedCluster(t *testing.T, seed uint64, specs []string, tune func(*gossip.Config)) *cluster {
	c := newCluster(t, seed, specs, func(cfg *gossip.Config) {
		cfg.Replicas = replicasOf
		if tune != nil {
			tune(cfg)
		}
	})
	for _, n := range c.nodes {
		n.rep.SetReplicas(replicasOf)
	}
	return c
}

// owners returns the names of the nodes of c that own ns/key under
// replicasOf when the running nodes are the members, every region.
func (c *cluster) owners(ns, key string) []string {
	return c.ownersWith(ns, key, replicasOf(ns))
}

// ownersWith is owners for a namespace of the given replicas per region.
func (c *cluster) ownersWith(ns, key string, replicas int) []string {
	out := ownersOfShard(c, change.ShardOf(ns, key, replicas))
	slices.Sort(out)
	return out
}

// shardedWrites adds to keys of ns on random running nodes and returns
// what each counter must read, and which nodes wrote to it.
func shardedWrites(c *cluster, rng *rand.Rand, ns string, keys, writes int, want map[gossiptest.Key]int64, writers map[gossiptest.Key]map[string]bool) {
	run := c.running()
	for i := range writes {
		n := run[rng.IntN(len(run))]
		k := gossiptest.Key{NS: ns, Key: fmt.Sprintf("k%d", i%keys)}
		by := int64(rng.IntN(5) + 1)
		c.add(n, k.NS, k.Key, by)
		want[k] += by
		if writers[k] == nil {
			writers[k] = make(map[string]bool)
		}
		writers[k][n.name] = true
	}
}

// shardedHeld checks that every owner of every counter in want reads it,
// and reports the first that does not.
func shardedHeld(c *cluster, want map[gossiptest.Key]int64) (bool, string) {
	for k, v := range want {
		for _, o := range c.owners(k.NS, k.Key) {
			if got := c.node(o).rep.Counter(k.NS, k.Key).Value(); got != v {
				return false, fmt.Sprintf("owner %s reads %v = %d, want %d", o, k, got, v)
			}
		}
	}
	return true, ""
}

func waitShardedHeld(t *testing.T, c *cluster, want map[gossiptest.Key]int64, timeout time.Duration) {
	t.Helper()
	var why string
	if !gossiptest.WaitFor(timeout, func() bool {
		var ok bool
		ok, why = shardedHeld(c, want)
		return ok
	}) {
		c.dump()
		t.Fatalf("sharded counters not at their owners after %v: %s", timeout, why)
	}
}

// A sharded namespace's counters reach their owners in every region and
// no other node; a namespace of every node still reaches every node; and
// no node holds a vector entry for a space of a shard it neither owns nor
// wrote, so no vector claims changes its node cannot hand on.
func TestShardedNamespaceReachesOnlyItsOwners(t *testing.T) {
	// Membership must hold still: a node declared dead for a moment (the
	// test timings' half second, on a starved machine) moves its shards
	// to another node, which then rightly holds them. Here no node
	// fails, so failure detection is slow.
	c := newShardedCluster(t, 41, []string{"a1@A", "a2@A", "b1@B", "b2@B", "c1@C", "c2@C"}, func(cfg *gossip.Config) {
		cfg.Membership.ProbeInterval = time.Second
		cfg.Membership.ProbeTimeout = 500 * time.Millisecond
		cfg.Membership.SuspicionMult = 6
		cfg.Membership.SuspicionMaxTimeoutMult = 6
	})
	c.startAll()
	rng := rand.New(rand.NewPCG(41, 1))
	want := make(map[gossiptest.Key]int64)
	writers := make(map[gossiptest.Key]map[string]bool)
	shardedWrites(c, rng, "sh", 120, 600, want, writers)
	shardedWrites(c, rng, "sh2", 40, 200, want, writers)
	full := make(map[gossiptest.Key]int64)
	shardedWrites(c, rng, "all", 10, 60, full, make(map[gossiptest.Key]map[string]bool))
	waitShardedHeld(t, c, want, 10*time.Second)

	// Full replication is untouched.
	if !gossiptest.WaitFor(5*time.Second, func() bool {
		for _, n := range c.nodes {
			for k, v := range full {
				if n.rep.Counter(k.NS, k.Key).Value() != v {
					return false
				}
			}
		}
		return true
	}) {
		t.Fatal("the namespace every node holds did not reach every node")
	}

	// Let anti-entropy run a few rounds: it must not spread shards either.
	time.Sleep(500 * time.Millisecond)
	for _, n := range c.nodes {
		held := 0
		for k := range want {
			owner := slices.Contains(c.owners(k.NS, k.Key), n.name)
			has := n.rep.Counter(k.NS, k.Key).Value() != 0 || len(n.rep.Counter(k.NS, k.Key).Slots) > 0
			if has {
				held++
			}
			if has && !owner && !writers[k][n.name] {
				t.Errorf("%s holds %v, which it neither owns (owners %v) nor wrote", n.name, k, c.owners(k.NS, k.Key))
			}
		}
		// With one replica per region of two nodes, a node owns about half
		// of "sh"; "sh2" is on every node.
		t.Logf("%s holds %d of %d sharded counters", n.name, held, len(want))
		vv := n.rep.VersionVector()
		for _, w := range c.nodes {
			for _, ns := range []string{"sh", "sh2"} {
				for p := range change.Partitions {
					s := change.Shard{Replicas: replicasOf(ns), Part: p}
					if _, ok := vv[s.Space(w.rep.Self())]; !ok || w == n {
						continue
					}
					if !slices.Contains(ownersOfShard(c, s), n.name) {
						t.Errorf("%s has a vector entry for %s's space of %+v, a shard it does not own", n.name, w.name, s)
					}
				}
			}
		}
	}
	for _, n := range c.nodes {
		if n.mesh.Stats().ApplyErrors != 0 {
			t.Errorf("%s: %d apply errors", n.name, n.mesh.Stats().ApplyErrors)
		}
	}
}

func ownersOfShard(c *cluster, s change.Shard) []string {
	regions := make(map[string][]string)
	for _, n := range c.running() {
		regions[n.region] = append(regions[n.region], n.name)
	}
	var out []string
	for _, names := range regions {
		out = append(out, gossip.ShardOwners(s, names)...)
	}
	return out
}

// shardedWithLateJoiner starts every node of c but late, writes 450
// changes of "sh" on them and waits until the owners hold them; then it
// starts late, has it join, writes 150 more and waits again. It returns
// what each counter must read, who wrote it, and how many counters late
// owns (none fails the test, which would prove nothing).
func shardedWithLateJoiner(t *testing.T, c *cluster, late *tnode, rng *rand.Rand) (want map[gossiptest.Key]int64, writers map[gossiptest.Key]map[string]bool, owned int) {
	t.Helper()
	var first *tnode
	for _, n := range c.nodes {
		if n == late {
			continue
		}
		c.start(n)
		if first == nil {
			first = n
		} else if _, err := n.mesh.Join([]string{first.host.GossipAddr()}); err != nil {
			t.Fatalf("join %s: %v", n.name, err)
		}
	}
	c.waitMembership(10 * time.Second)
	want = make(map[gossiptest.Key]int64)
	writers = make(map[gossiptest.Key]map[string]bool)
	shardedWrites(c, rng, "sh", 150, 450, want, writers)
	waitShardedHeld(t, c, want, 10*time.Second)

	c.start(late)
	if _, err := late.mesh.Join([]string{first.host.GossipAddr()}); err != nil {
		t.Fatalf("join %s: %v", late.name, err)
	}
	c.waitMembership(10 * time.Second)
	for k := range want {
		if slices.Contains(c.owners(k.NS, k.Key), late.name) {
			owned++
		}
	}
	if owned == 0 {
		t.Fatalf("the joining node %s owns none of the counters; the test proves nothing", late.name)
	}
	shardedWrites(c, rng, "sh", 150, 150, want, writers)
	waitShardedHeld(t, c, want, 15*time.Second)
	return want, writers, owned
}

// A node that joins becomes an owner of some partitions and receives
// their counters from the other owners by anti-entropy; when a node leaves,
// the partitions it owned move to the node left in its region, which gets
// them the same way. Every counter reads its full value at every owner
// after each change.
func TestShardedOwnershipMovesWithMembership(t *testing.T) {
	c := newShardedCluster(t, 43, []string{"a1@A", "a2@A", "b1@B", "b2@B", "a3@A"}, nil)
	rng := rand.New(rand.NewPCG(43, 1))
	want, writers, owned := shardedWithLateJoiner(t, c, c.node("a3"), rng)
	t.Logf("a3 joined and got the %d of %d counters it now owns", owned, len(want))

	// a1 leaves: its partitions move to a2 or a3.
	a1 := c.node("a1")
	c.stop(a1, false)
	c.waitMembership(10 * time.Second)
	shardedWrites(c, rng, "sh", 150, 150, want, writers)
	waitShardedHeld(t, c, want, 15*time.Second)
}

// A space's changes dropped on the way (the queue to a stalled owner
// overflowed) are repaired by anti-entropy, which gives the owner the
// spaces of the shards it owns and nothing else.
func TestShardedDropsRepairedByAntiEntropy(t *testing.T) {
	var aeOn atomic.Bool
	c := newShardedCluster(t, 47, []string{"a1@A", "b1@B", "b2@B"}, func(cfg *gossip.Config) {
		cfg.MaxQueueBytes = 4 << 10
		cfg.MaxInflightFrames = 1
		cfg.MaxFrameDeltas = 20
		cfg.AntiEntropyInterval = 50 * time.Millisecond
	})
	c.startAll()
	a1, b1 := c.node("a1"), c.node("b1")
	release := make(chan struct{})
	var once sync.Once
	b1.rep.SetApplyHook(func(gossip.Batch) error {
		if !aeOn.Load() {
			<-release
		}
		return nil
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	want := make(map[gossiptest.Key]int64)
	for i := range 2000 {
		k := gossiptest.Key{NS: "sh", Key: fmt.Sprintf("k%d", i)}
		c.add(a1, k.NS, k.Key, 1)
		want[k] = 1
	}
	st := a1.mesh.Stats()
	if st.Drops == 0 {
		t.Fatalf("no drops with a stalled owner and a 4 KiB queue: %+v", st)
	}
	aeOn.Store(true)
	once.Do(func() { close(release) })
	waitShardedHeld(t, c, want, 10*time.Second)
	if got := b1.mesh.Stats().AntiEntropyDeltasReceived; got == 0 {
		t.Fatal("b1 received nothing by anti-entropy: the drops were not what the test meant")
	}
	owned := 0
	for k := range want {
		if slices.Contains(c.owners(k.NS, k.Key), "b1") {
			owned++
		}
	}
	if got := b1.rep.Len(); got != owned {
		t.Fatalf("b1 holds %d counters, owns %d", got, owned)
	}
	t.Logf("a1 dropped %d batches to stalled owners; b1 holds exactly the %d of 2000 it owns", st.Drops, owned)
}

// A node that numbers its changes of a sharded namespace under its own id
// (it had not learned yet that the namespace is sharded) keeps them, and
// its id, on the full replication path: every node gets them and its
// vector for that node stays contiguous; the mesh never takes the node's
// id for a space.
func TestShardedChangeUnderTheNodeIDStaysFull(t *testing.T) {
	c := newShardedCluster(t, 53, []string{"a1@A", "a2@A", "b1@B", "b2@B"}, nil)
	a1 := c.node("a1")
	a1.rep.SetReplicas(nil) // a1's replica numbers "sh" under its id
	c.startAll()
	for i := range 40 {
		c.add(a1, "sh", fmt.Sprintf("k%d", i), 1)
		c.add(a1, "all", fmt.Sprintf("k%d", i), 1)
	}
	if !gossiptest.WaitFor(10*time.Second, func() bool {
		for _, n := range c.nodes {
			if n.rep.VersionVector()[a1.rep.Self()] != 80 || n.rep.Len() != 80 {
				return false
			}
		}
		return true
	}) {
		c.dump()
		t.Fatal("the changes a1 numbered under its id did not reach every node whole")
	}
}

// A writer restarted with an empty disk gets its own changes of shards it
// does not own back from their owners (anti-entropy gives a node its own
// spaces whoever owns them), before it numbers new ones.
func TestShardedWriterGetsItsOwnSpacesBack(t *testing.T) {
	c := newShardedCluster(t, 59, []string{"a1@A", "a2@A", "b1@B", "b2@B"}, nil)
	c.startAll()
	a1 := c.node("a1")
	want := make(map[gossiptest.Key]int64)
	notOwned := 0
	for i := range 200 {
		k := gossiptest.Key{NS: "sh", Key: fmt.Sprintf("k%d", i)}
		c.add(a1, k.NS, k.Key, int64(i%5+1))
		want[k] = int64(i%5 + 1)
		if !slices.Contains(c.owners(k.NS, k.Key), "a1") {
			notOwned++
		}
	}
	if notOwned == 0 {
		t.Fatal("a1 owns every counter it wrote; the test proves nothing")
	}
	waitShardedHeld(t, c, want, 10*time.Second)
	mine := a1.rep.VersionVector()
	c.stop(a1, true)
	a1.rep = gossiptest.NewReplica(a1.rep.Self()) // the disk is lost
	a1.rep.SetReplicas(replicasOf)
	c.restart(a1)
	if !gossiptest.WaitFor(10*time.Second, func() bool {
		vv := a1.rep.VersionVector()
		for o, s := range mine {
			if vv[o] < s {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("a1's vector after the restart %v does not cover what it had written %v", a1.rep.VersionVector(), mine)
	}
	for k, v := range want {
		if got := a1.rep.Counter(k.NS, k.Key).Slot(a1.rep.Self()).P; got != uint64(v) {
			t.Fatalf("a1's own slot of %v is %d after the restart, want %d", k, got, v)
		}
	}
	t.Logf("a1 got back its slot of the %d counters it wrote, %d of which it does not own", len(want), notOwned)
}

// Placement with bounded loads: with one replica every member of a region
// holds the same number of partitions within one (with R, within 2R), every partition has its replicas on
// distinct members, the answer does not depend on the order of the
// candidates, and a member that joins moves few partitions.
func TestShardOwnersBalanced(t *testing.T) {
	spread := 0
	defer func() { t.Logf("the widest spread of loads: %d partitions", spread) }()
	for n := 1; n <= 20; n++ {
		var names []string
		for i := range n {
			names = append(names, fmt.Sprintf("node-%02d", i))
		}
		for _, r := range []int{1, 2, 3} {
			load := map[string]int{}
			for p := range change.Partitions {
				s := change.Shard{Replicas: r, Part: p}
				owners := gossip.ShardOwners(s, names)
				if want := min(r, n); len(owners) != want || len(slices.Compact(slices.Sorted(slices.Values(owners)))) != want {
					t.Fatalf("%d members, %d replicas, partition %d: owners %v", n, r, p, owners)
				}
				reversed := slices.Clone(names)
				slices.Reverse(reversed)
				if got := gossip.ShardOwners(s, reversed); !slices.Equal(got, owners) {
					t.Fatalf("owners depend on the candidates' order: %v against %v", got, owners)
				}
				for _, o := range owners {
					load[o]++
				}
			}
			lo, hi := change.Partitions, 0
			for _, name := range names {
				lo, hi = min(lo, load[name]), max(hi, load[name])
			}
			// One replica: even within one. More: each replica's places
			// are even within one, the sum within two per replica.
			if limit := max(1, 2*min(r, n)); (r == 1 && hi-lo > 1) || hi-lo > limit {
				t.Errorf("%d members, %d replicas: loads from %d to %d partitions", n, r, lo, hi)
			}
			spread = max(spread, hi-lo)
		}
	}
	// The first pass does not depend on the replicas: the owner of a
	// namespace with one replica is the first of one with three.
	for p := range change.Partitions {
		names := []string{"a", "b", "c", "d", "e", "f"}
		one := gossip.ShardOwners(change.Shard{Replicas: 1, Part: p}, names)
		three := gossip.ShardOwners(change.Shard{Replicas: 3, Part: p}, names)
		if one[0] != three[0] {
			t.Fatalf("partition %d: the owner with 1 replica is %s, the first with 3 is %s", p, one[0], three[0])
		}
	}
	// A fifth member joining four moves about a fifth of the placements,
	// not all of them.
	four := []string{"a", "b", "c", "d"}
	five := append(slices.Clone(four), "e")
	moved := 0
	for p := range change.Partitions {
		s := change.Shard{Replicas: 1, Part: p}
		if !slices.Equal(gossip.ShardOwners(s, four), gossip.ShardOwners(s, five)) {
			moved++
		}
	}
	if moved > change.Partitions/2 {
		t.Errorf("a fifth member moved %d of %d partitions", moved, change.Partitions)
	}
	t.Logf("a fifth member moved %d of %d partitions (a fifth is %d)", moved, change.Partitions, change.Partitions/5)
}
