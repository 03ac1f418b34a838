package peerrpc_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/gossip/fakenet"
	"github.com/countmesh/countmesh/internal/wait"
	"github.com/countmesh/countmesh/node"
	"github.com/countmesh/countmesh/peerrpc"
)

// shardNode is a node of a sharded mesh as countd wires it (the mesh
// shards by the node's namespace configs), on a fake host.
type shardNode struct {
	name, region string
	node         *node.Node
	mesh         *gossip.Mesh
	client       *peerrpc.Client
}

func startShardNode(t *testing.T, nw *fakenet.Network, name, region string, inc uint64, join string, tune ...func(*gossip.Config)) *shardNode {
	t.Helper()
	sn := &shardNode{name: name, region: region, client: new(peerrpc.Client)}
	cfg := node.DefaultConfig()
	cfg.Name, cfg.Region, cfg.Incarnation = name, region, inc
	cfg.Store.Dir, cfg.Store.FS = "data", vfs.NewMem()
	cfg.Logger = zap.NewNop()
	cfg.Peers, cfg.PeerTransport, cfg.Rights = sn.client, sn.client, sn.client
	cfg.QuorumTimeout = time.Second
	cfg.ReleaseInterval = 200 * time.Millisecond
	cfg.StartUnready = join != ""
	n, err := node.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sn.node = n
	gcfg := testMeshConfig(nw.Host(name, region), name, region)
	gcfg.NodeID, gcfg.Replicas = n.ID(), n.ReplicasOf
	gcfg.AntiEntropyInterval = 200 * time.Millisecond
	for _, f := range tune {
		f(&gcfg)
	}
	m, err := gossip.New(gcfg, n.Replica())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	sn.mesh = m
	n.SetPublisher(m)
	sn.client.Attach(m)
	peerrpc.Serve(m, peerrpc.Services{Node: n})
	// The retired list's sync runs from the start, as in countd: a node
	// catching up from folded states asks for the list.
	done := make(chan struct{})
	go peerrpc.SyncRetired(done, sn.client, n)
	t.Cleanup(func() { close(done) })
	if join != "" {
		if _, err := m.Join([]string{join}); err != nil {
			t.Fatal(err)
		}
		wait.For(t, 10*time.Second, name+" catching up", func() (bool, string) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err := m.SyncOnce(ctx)
			return err == nil, fmt.Sprint(err)
		})
		n.MarkReady()
	}
	return sn
}

func (sn *shardNode) close() {
	sn.mesh.Close()
	sn.node.Close()
}

// An owner of a sharded namespace's counters that joined late, lost its
// disk and is back at once, as a new incarnation, before the others saw
// it go: every node still reads every acknowledged increment, those
// written before the wipe and after. The chaos campaign saw such an owner
// take none of some nodes' changes for more than a minute (docs/chaos.md,
// fourteenth stop), and lacking the slots of nodes that had left.
// TestShardedOwnerWipedBeforeItsFailureIsSeen (gossip) is the same case
// over in-memory replicas. Neither reproduces the campaign's divergence.
func TestShardedOwnerWipedAndBackAtOnce(t *testing.T) {
	nw := fakenet.New(21, 0)
	ctx := context.Background()
	first := startShardNode(t, nw, "a1", "A", 0, "")
	first.node.MarkReady()
	seed := nw.Host("a1", "A").GossipAddr()
	nodes := []*shardNode{first}
	for _, s := range [][2]string{{"a2", "A"}, {"b1", "B"}, {"b2", "B"}} {
		nodes = append(nodes, startShardNode(t, nw, s[0], s[1], 0, seed))
	}
	t.Cleanup(func() {
		for _, sn := range nodes {
			sn.close()
		}
	})
	one := 1
	if _, err := first.node.PutNamespace(ctx, "sh", node.NamespacePatch{Replicas: &one}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "every node knowing sh is sharded", func() (bool, string) {
		for _, sn := range nodes {
			if sn.node.ReplicasOf("sh") != 1 {
				return false, sn.name + " does not"
			}
		}
		return true, ""
	})
	rng := rand.New(rand.NewPCG(21, 1))
	want := map[string]int64{}
	write := func(n int) {
		t.Helper()
		for range n {
			sn := nodes[rng.IntN(len(nodes))]
			key := fmt.Sprintf("k%d", rng.IntN(60))
			by := int64(rng.IntN(3) + 1)
			if _, err := sn.node.Incr(ctx, "sh", key, by, node.WriteOptions{}); err != nil {
				t.Fatalf("incr at %s: %v", sn.name, err)
			}
			want[key] += by
		}
	}
	settled := func(what string) {
		t.Helper()
		wait.For(t, 20*time.Second, what, func() (bool, string) {
			for _, sn := range nodes {
				for key, v := range want {
					c, err := sn.node.Get(ctx, "sh", key, node.ReadOptions{})
					if err != nil || c.Value != v {
						return false, fmt.Sprintf("%s reads sh/%s = %d (%v), want %d", sn.name, key, c.Value, err, v)
					}
				}
			}
			return true, ""
		})
	}
	write(300)
	settled("the first writes at every node")
	// b2 leaves for good: its slots live on at the owners only, and a node
	// that comes later never heard of it.
	gone := nodes[3]
	if err := gone.mesh.Leave(); err != nil {
		t.Fatalf("b2 leaving: %v", err)
	}
	gone.mesh.Close()
	gone.node.Close()
	nodes = nodes[:3]
	write(100)
	settled("the writes after b2 left")

	late := startShardNode(t, nw, "a3", "A", 0, seed)
	nodes = append(nodes, late)
	write(150)
	settled("the writes after a3 joined")
	time.Sleep(time.Second) // releases of the copies a3 now owns

	late.close()
	late = startShardNode(t, nw, "a3", "A", 1, seed) // an empty disk: a new incarnation
	nodes[len(nodes)-1] = late
	write(150)
	settled("the writes after a3's wipe")
	held := 0 // counters a3's new incarnation holds whole: those it owns
	for key, v := range want {
		if c, found, err := late.node.Replica().CounterState("sh", key); err == nil && found && c.Value() == v {
			held++
		}
	}
	if held == 0 {
		t.Fatal("a3 holds none of the counters whole after its wipe: it owns none, and the test proves nothing")
	}
	t.Logf("a3, wiped and back at once, holds %d of %d counters whole", held, len(want))
}
