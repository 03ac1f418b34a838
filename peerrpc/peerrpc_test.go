package peerrpc_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/gossip/fakenet"
	"github.com/countmesh/countmesh/internal/wait"
	"github.com/countmesh/countmesh/node"
	"github.com/countmesh/countmesh/peerrpc"
	"github.com/countmesh/countmesh/ratelimit"
)

// peerNode is a node with its mesh on the fake network, its peer client
// attached and its services served, as countd wires them.
type peerNode struct {
	name    string
	node    *node.Node
	mesh    *gossip.Mesh
	client  *peerrpc.Client
	limiter *ratelimit.Limiter
}

func startPeerNodes(t *testing.T, nw *fakenet.Network, region string, names ...string) []*peerNode {
	t.Helper()
	var out []*peerNode
	for _, name := range names {
		pn := &peerNode{name: name, client: new(peerrpc.Client)}
		cfg := node.DefaultConfig()
		cfg.Name, cfg.Region = name, region
		cfg.Store.Dir, cfg.Store.FS = "data", vfs.NewMem()
		cfg.Logger = zap.NewNop()
		cfg.Peers, cfg.PeerTransport, cfg.Rights = pn.client, pn.client, pn.client
		cfg.QuorumTimeout = time.Second
		n, err := node.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		pn.node = n
		m, err := gossip.New(testMeshConfig(nw.Host(name, region), name, region), n.Replica())
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		pn.mesh = m
		n.SetPublisher(m)
		pn.client.Attach(m)
		rcfg := ratelimit.DefaultConfig()
		rcfg.Membership, rcfg.Transport, rcfg.Logger = ratelimit.MeshMembership(m), pn.client, zap.NewNop()
		if pn.limiter, err = ratelimit.New(rcfg); err != nil {
			t.Fatal(err)
		}
		peerrpc.Serve(m, peerrpc.Services{Node: n, Limiter: pn.limiter})
		t.Cleanup(func() {
			pn.limiter.Close()
			m.Close()
			n.Close()
		})
		out = append(out, pn)
	}
	for _, pn := range out[1:] {
		if _, err := pn.mesh.Join([]string{nw.Host(out[0].name, region).GossipAddr()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, pn := range out {
		wait.For(t, 10*time.Second, fmt.Sprintf("%s seeing %d alive members", pn.name, len(out)), func() (bool, string) {
			n := alive(pn.mesh)
			return n == len(out), fmt.Sprintf("%d alive", n)
		})
	}
	return out
}

// testMeshConfig is the mesh config of a test node on host h: fast
// flushes and failure detection.
func testMeshConfig(h *fakenet.Host, name, region string) gossip.Config {
	gcfg := gossip.DefaultConfig()
	gcfg.Name, gcfg.Region = name, region
	gcfg.GossipAddr, gcfg.ReplAddr = h.GossipAddr(), h.ReplAddr()
	gcfg.Network, gcfg.Transport = h, h.NewTransport()
	gcfg.FlushInterval = 10 * time.Millisecond
	gcfg.DialTimeout = 500 * time.Millisecond
	gcfg.LeaveTimeout = 300 * time.Millisecond
	gcfg.Membership.ProbeInterval = 200 * time.Millisecond
	gcfg.Membership.ProbeTimeout = 100 * time.Millisecond
	gcfg.Membership.GossipInterval = 20 * time.Millisecond
	gcfg.Membership.Tune = func(mc *memberlist.Config) { mc.EnableCompression = false }
	return gcfg
}

func alive(m *gossip.Mesh) int {
	n := 0
	for _, mb := range m.Status().Members {
		if mb.State == gossip.StateAlive {
			n++
		}
	}
	return n
}

func TestQuorumOverThePeerTransport(t *testing.T) {
	nw := fakenet.New(7, 0)
	ps := startPeerNodes(t, nw, "a", "a1", "a2", "a3")
	ctx := context.Background()
	if _, err := ps[0].node.Incr(ctx, "ns", "k", 3, node.WriteOptions{Consistency: node.ConsistencyQuorum}); err != nil {
		t.Fatalf("quorum incr: %v", err)
	}
	holders := 0
	for _, p := range ps {
		// What each node holds durably, as its peers would fetch it.
		st, err := ps[0].client.FetchState(ctx, node.Peer{Name: p.name}, "ns", "k")
		if p.name == ps[0].name {
			st, err = p.node.PeerState(ctx, "ns", "k")
		}
		if err != nil {
			t.Fatalf("state of %s: %v", p.name, err)
		}
		if st.Value() == 3 {
			holders++
		}
	}
	if holders < 2 {
		t.Fatalf("after a quorum incr, %d of 3 nodes hold it; want a majority", holders)
	}
	c, err := ps[2].node.Get(ctx, "ns", "k", node.ReadOptions{Consistency: node.ConsistencyQuorum})
	if err != nil || c.Value != 3 {
		t.Fatalf("quorum read on a3: %+v, %v; want 3", c, err)
	}

	// A push carries internal keys (control-byte prefixes) unchanged, and a
	// counter never seen reads as the zero state.
	var st crdt.Counter
	if _, err := st.Add(crdt.NodeIDFromName("a1"), 41); err != nil {
		t.Fatal(err)
	}
	key := "\x03internal\x00series"
	if err := ps[0].client.PushStates(ctx, node.Peer{Name: "a2"}, []node.CounterState{{NS: "ns", Key: key, State: st}}); err != nil {
		t.Fatalf("push: %v", err)
	}
	got, err := ps[0].client.FetchState(ctx, node.Peer{Name: "a2"}, "ns", key)
	if err != nil || !got.Equal(st) {
		t.Fatalf("fetch of the pushed state: %+v, %v; want %+v", got, err, st)
	}
	got, err = ps[0].client.FetchState(ctx, node.Peer{Name: "a2"}, "ns", "never")
	if err != nil || got.Value() != 0 || len(got.Slots) != 0 {
		t.Fatalf("fetch of an unknown counter: %+v, %v; want the zero state", got, err)
	}

	// Covers answers the peer's vector entries of the spaces asked (a1's
	// id holds its quorum incr's change; an unknown one 0) and the states.
	a1 := crdt.NodeIDFromName("a1")
	want := ps[1].node.Replica().VersionVector()[a1]
	upto, sts, err := ps[0].client.Covers(ctx, node.Peer{Name: "a2"}, []crdt.NodeID{a1, 12345}, []node.KeyRef{{NS: "ns", Key: key}, {NS: "ns", Key: "never"}})
	if err != nil || len(upto) != 2 || len(sts) != 2 {
		t.Fatalf("covers: %v, %v, %v", upto, sts, err)
	}
	if upto[0] != want || upto[1] != 0 || !sts[0].Equal(st) || len(sts[1].Slots) != 0 {
		t.Fatalf("covers: entries %v (want [%d 0]), states %+v", upto, want, sts)
	}
}

func TestPeerCallsAreBoundToTheCaller(t *testing.T) {
	nw := fakenet.New(8, 0)
	ps := startPeerNodes(t, nw, "a", "b1", "b2")
	ctx := context.Background()
	// Rights requested on behalf of another node are refused: rights go to
	// the node the transport names.
	_, err := ps[0].client.TransferRights(ctx, node.Peer{Name: "b2"}, node.RightsRequest{NS: "likes", Key: "p", Down: true, Want: 1, To: crdt.NodeIDFromName("b2")})
	if !errors.Is(err, gossip.ErrRemote) {
		t.Fatalf("rights for someone else: %v, want a refusal", err)
	}
	// A lease request's From is replaced by the caller's name: b1 cannot
	// give back a lease in b2's name. Here b1 claims to be "mallory"; the
	// owner answers (or says who owns the key) without error, and records
	// the lease under b1.
	resp, err := ps[0].client.Lease(ctx, "b2", ratelimit.LeaseRequest{From: "mallory", NS: "api", Key: "u1", Window: time.Minute, Limit: 10, Want: 1})
	if err != nil {
		t.Fatalf("lease: %v", err)
	}
	if !resp.NotOwner && resp.Granted < 1 {
		t.Fatalf("lease from the owner granted nothing: %+v", resp)
	}
	// A request outside what the sender could admit is refused.
	_, err = ps[0].client.Lease(ctx, "b2", ratelimit.LeaseRequest{NS: "api", Key: "u1", Window: time.Minute, Limit: 10, Sync: []ratelimit.WindowCount{{Window: 0, Count: -100}}})
	if !errors.Is(err, gossip.ErrRemote) {
		t.Fatalf("negative synced count: %v, want a refusal", err)
	}
	// Too many states in one push.
	big := make([]node.CounterState, peerrpc.MaxStates+1)
	for i := range big {
		big[i] = node.CounterState{NS: "ns", Key: "k"}
	}
	if err := ps[0].client.PushStates(ctx, node.Peer{Name: "b2"}, big); !errors.Is(err, gossip.ErrRemote) {
		t.Fatalf("push of %d states: %v, want a refusal", len(big), err)
	}
}
