package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/countmesh/countmesh/crdt"
)

// quorumNet is an in-process PeerTransport between test nodes, with cuts:
// a call from or to a cut node fails at once, or, when hang is set, blocks
// until its context ends (a peer that does not answer).
type quorumNet struct {
	mu     sync.Mutex // guards the fields below
	nodes  map[string]*Node
	region map[string]string
	alive  map[string]bool
	cut    map[string]bool
	hang   bool
	calls  int
}

var errCut = errors.New("quorumNet: cut off")

func newQuorumNet() *quorumNet {
	return &quorumNet{nodes: map[string]*Node{}, region: map[string]string{}, alive: map[string]bool{}, cut: map[string]bool{}}
}

// peersOf is the Peers view of one node.
type netPeers struct{ net *quorumNet }

func (p netPeers) Peers() []Peer {
	p.net.mu.Lock()
	defer p.net.mu.Unlock()
	var out []Peer
	for name := range p.net.nodes {
		out = append(out, Peer{Name: name, Region: p.net.region[name], HTTPAddr: "mem:" + name, Alive: p.net.alive[name]})
	}
	return out
}

// from returns the transport as seen by node self.
func (q *quorumNet) from(self string) PeerTransport { return netTransport{q, self} }

type netTransport struct {
	net  *quorumNet
	self string
}

func (t netTransport) target(ctx context.Context, p Peer) (*Node, error) {
	t.net.mu.Lock()
	n := t.net.nodes[p.Name]
	cut := t.net.cut[t.self] || t.net.cut[p.Name]
	hang := t.net.hang
	t.net.calls++
	t.net.mu.Unlock()
	if cut {
		if hang {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %s -> %s", errCut, t.self, p.Name)
	}
	return n, nil
}

func (t netTransport) FetchState(ctx context.Context, p Peer, ns, key string) (crdt.Counter, error) {
	n, err := t.target(ctx, p)
	if err != nil {
		return crdt.Counter{}, err
	}
	return n.PeerState(ctx, ns, key)
}

func (t netTransport) PushStates(ctx context.Context, p Peer, states []CounterState) error {
	n, err := t.target(ctx, p)
	if err != nil {
		return err
	}
	// A copy, as the wire would make: the receiver must not share slices
	// with the sender.
	cp := make([]CounterState, len(states))
	for i, s := range states {
		cp[i] = CounterState{NS: s.NS, Key: s.Key, State: s.State.Clone()}
	}
	return n.MergeStates(ctx, cp)
}

func (q *quorumNet) setCut(cut bool, names ...string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, name := range names {
		q.cut[name] = cut
	}
}

func (q *quorumNet) setAlive(name string, alive bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.alive[name] = alive
}

// openQuorumNode opens node name of region on an in-memory file system,
// attached to q.
func openQuorumNode(t *testing.T, q *quorumNet, name, region string, timeout time.Duration) *Node {
	t.Helper()
	cfg := testConfig(t, vfs.NewMem())
	cfg.Name, cfg.Region = name, region
	cfg.Peers = netPeers{q}
	cfg.PeerTransport = q.from(name)
	cfg.QuorumTimeout = timeout
	n := openTest(t, cfg)
	q.mu.Lock()
	q.nodes[name], q.region[name], q.alive[name] = n, region, true
	q.mu.Unlock()
	return n
}

func localValue(t *testing.T, n *Node, ns, key string) int64 {
	t.Helper()
	c, err := n.Get(context.Background(), ns, key, ReadOptions{Consistency: ConsistencyLocal})
	if err != nil {
		t.Fatalf("local get on %s: %v", n.Name(), err)
	}
	return c.Value
}

func TestQuorumReadReturnsQuorumWritesAcrossNodes(t *testing.T) {
	q := newQuorumNet()
	a1 := openQuorumNode(t, q, "a1", "a", time.Second)
	a2 := openQuorumNode(t, q, "a2", "a", time.Second)
	a3 := openQuorumNode(t, q, "a3", "a", time.Second)
	ctx := context.Background()

	// a3 misses the write: a1 and a2 are the majority that acknowledges it.
	q.setCut(true, "a3")
	if _, err := a1.Incr(ctx, "ns", "k", 5, WriteOptions{Consistency: ConsistencyQuorum}); err != nil {
		t.Fatalf("quorum incr with one node of three cut off: %v", err)
	}
	if got := localValue(t, a2, "ns", "k"); got != 5 {
		t.Fatalf("a2 acknowledged the write but holds %d, want 5", got)
	}
	q.setCut(false, "a3")
	if got := localValue(t, a3, "ns", "k"); got != 0 {
		t.Fatalf("the cut did not hold: a3 holds %d before any quorum read, want 0", got)
	}
	// a1, the writer, is now unreachable: a3's quorum is a3 and a2.
	q.setCut(true, "a1")
	c, err := a3.Get(ctx, "ns", "k", ReadOptions{Consistency: ConsistencyQuorum})
	if err != nil {
		t.Fatalf("quorum read on a3: %v", err)
	}
	if c.Value != 5 {
		t.Fatalf("quorum read on a3 = %d, want the quorum-acknowledged 5", c.Value)
	}
	// The merge stayed: a3's local copy has it now.
	if got := localValue(t, a3, "ns", "k"); got != 5 {
		t.Fatalf("a3's local copy after the quorum read = %d, want 5", got)
	}
}

func TestQuorumUnreachableIs503InBoundedTime(t *testing.T) {
	const timeout = 300 * time.Millisecond
	q := newQuorumNet()
	a1 := openQuorumNode(t, q, "a1", "a", timeout)
	openQuorumNode(t, q, "a2", "a", timeout)
	openQuorumNode(t, q, "a3", "a", timeout)
	q.mu.Lock()
	q.hang = true // the peers do not answer at all
	q.mu.Unlock()
	q.setCut(true, "a2", "a3")
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		op   func() error
	}{
		{"write", func() error {
			_, err := a1.Incr(ctx, "ns", "k", 1, WriteOptions{Consistency: ConsistencyQuorum})
			return err
		}},
		{"read", func() error {
			_, err := a1.Get(ctx, "ns", "k", ReadOptions{Consistency: ConsistencyQuorum})
			return err
		}},
		{"all write", func() error {
			_, err := a1.Incr(ctx, "ns", "k", 1, WriteOptions{Consistency: ConsistencyAll})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := tc.op()
			took := time.Since(start)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if took < timeout/2 || took > 3*timeout {
				t.Fatalf("answered after %v, want about the quorum timeout %v", took, timeout)
			}
		})
	}
	// The failed writes stay applied here (nothing is undone) and a local
	// read shows them.
	if got := localValue(t, a1, "ns", "k"); got != 2 {
		t.Fatalf("a1 holds %d after two refused writes, want 2 (applied locally, may arrive later)", got)
	}
}

func TestQuorumFailsFastWhenTooManyPeersRefuse(t *testing.T) {
	q := newQuorumNet()
	a1 := openQuorumNode(t, q, "a1", "a", 5*time.Second)
	openQuorumNode(t, q, "a2", "a", 5*time.Second)
	openQuorumNode(t, q, "a3", "a", 5*time.Second)
	q.setCut(true, "a2", "a3") // refused at once, not hanging
	start := time.Now()
	_, err := a1.Incr(context.Background(), "ns", "k", 1, WriteOptions{Consistency: ConsistencyQuorum})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, errCut) {
		t.Fatalf("err = %v, want ErrUnavailable carrying the peers' refusals", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("took %v although every peer refused at once", took)
	}
}

func TestQuorumCountsOnlyTheRegion(t *testing.T) {
	q := newQuorumNet()
	a1 := openQuorumNode(t, q, "a1", "a", 300*time.Millisecond)
	a2 := openQuorumNode(t, q, "a2", "a", 300*time.Millisecond)
	b1 := openQuorumNode(t, q, "b1", "b", 300*time.Millisecond)
	b2 := openQuorumNode(t, q, "b2", "b", 300*time.Millisecond)
	ctx := context.Background()
	// Region a has 2 nodes: its majority is both. Region b is cut off.
	q.setCut(true, "b1", "b2")
	if _, err := a1.Incr(ctx, "ns", "k", 1, WriteOptions{Consistency: ConsistencyQuorum}); err != nil {
		t.Fatalf("quorum write with the other region cut off: %v", err)
	}
	if got := localValue(t, a2, "ns", "k"); got != 1 {
		t.Fatalf("a2 holds %d, want 1", got)
	}
	if got := localValue(t, b1, "ns", "k") + localValue(t, b2, "ns", "k"); got != 0 {
		t.Fatalf("region b received %d through a cut", got)
	}
	// all needs region b too.
	if _, err := a1.Incr(ctx, "ns", "k", 1, WriteOptions{Consistency: ConsistencyAll}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("all write with live nodes cut off: err = %v, want ErrUnavailable", err)
	}
	// A node the failure detector declared dead is not waited for by all.
	q.setCut(false, "b1")
	q.setAlive("b2", false)
	if _, err := a1.Incr(ctx, "ns", "k", 1, WriteOptions{Consistency: ConsistencyAll}); err != nil {
		t.Fatalf("all write with the only unreachable node dead: %v", err)
	}
	for _, n := range []*Node{a1, a2, b1} {
		if got := localValue(t, n, "ns", "k"); got != 3 {
			t.Fatalf("%s holds %d after an all write, want 3", n.Name(), got)
		}
	}
	// Both regions' live nodes are merged by an all read.
	q.setCut(false, "b2")
	q.setAlive("b2", true)
	c, err := b2.Get(ctx, "ns", "k", ReadOptions{Consistency: ConsistencyAll})
	if err != nil || c.Value != 3 {
		t.Fatalf("all read on b2 = %d, %v; want 3", c.Value, err)
	}
}

func TestQuorumExactNamespaceDefaultsToQuorum(t *testing.T) {
	q := newQuorumNet()
	a1 := openQuorumNode(t, q, "a1", "a", time.Second)
	a2 := openQuorumNode(t, q, "a2", "a", time.Second)
	a3 := openQuorumNode(t, q, "a3", "a", time.Second)
	ctx := context.Background()
	exact := TypeExact
	if _, err := a1.PutNamespace(ctx, "likes", NamespacePatch{Type: &exact}); err != nil {
		t.Fatal(err)
	}
	q.setCut(true, "a3")
	if _, err := a1.Incr(ctx, "likes", "post", 1, WriteOptions{}); err != nil {
		t.Fatalf("incr in an exact namespace: %v", err)
	}
	if got := localValue(t, a2, "likes", "post"); got != 1 {
		t.Fatalf("exact namespace: a2 holds %d after the write returned, want 1 (quorum by default)", got)
	}
	// An eventual namespace stays local by default.
	if _, err := a1.Incr(ctx, "views", "post", 1, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := localValue(t, a2, "views", "post"); got != 0 {
		t.Fatalf("eventual namespace: a2 holds %d, want 0 (local by default, no mesh here)", got)
	}
	// Reads too: a3 has no namespace config (no gossip here), so it is
	// told; a2 knows nothing of it either. Give a3 the config, then read.
	if _, err := a3.PutNamespace(ctx, "likes", NamespacePatch{Type: &exact}); err != nil {
		t.Fatal(err)
	}
	q.setCut(false, "a3")
	q.setCut(true, "a1")
	c, err := a3.Get(ctx, "likes", "post", ReadOptions{})
	if err != nil || c.Value != 1 {
		t.Fatalf("default read of an exact namespace on a3 = %d, %v; want the quorum value 1", c.Value, err)
	}
	// An explicit local read is still local.
	q.setCut(false, "a1")
	if _, err := a1.Incr(ctx, "likes", "post", 1, WriteOptions{Consistency: ConsistencyLocal}); err != nil {
		t.Fatal(err)
	}
	if got := localValue(t, a2, "likes", "post"); got != 1 {
		t.Fatalf("a local write reached a2 (%d)", got)
	}
}

// A quorum read that saw a write only part of the region holds puts it on
// a majority before it answers, so that a later read elsewhere, whose
// majority may miss every node that held it before, still sees it.
func TestQuorumReadWritesBackToAMajority(t *testing.T) {
	q := newQuorumNet()
	names := []string{"a1", "a2", "a3", "a4", "a5"}
	nodes := map[string]*Node{}
	for _, name := range names {
		nodes[name] = openQuorumNode(t, q, name, "a", 500*time.Millisecond)
	}
	ctx := context.Background()
	// The write reaches a1 only (a 503: it may arrive later).
	q.setCut(true, "a2", "a3", "a4", "a5")
	if _, err := nodes["a1"].Incr(ctx, "ns", "k", 1, WriteOptions{Consistency: ConsistencyQuorum}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("write with every peer cut: err = %v, want ErrUnavailable", err)
	}
	// a2 reads from a1 and a3 (a4, a5 cut): it sees the write.
	q.setCut(false, "a2", "a3")
	q.setCut(true, "a4", "a5")
	c, err := nodes["a2"].Get(ctx, "ns", "k", ReadOptions{Consistency: ConsistencyQuorum})
	if err != nil || c.Value != 1 {
		t.Fatalf("quorum read on a2 = %d, %v; want 1", c.Value, err)
	}
	holders := 0
	for _, name := range names {
		holders += int(localValue(t, nodes[name], "ns", "k"))
	}
	if holders < 3 {
		t.Fatalf("after a quorum read that returned the write, %d of 5 nodes hold it, want a majority", holders)
	}
	// a5 reads with a1 and a2 cut: its majority is a3, a4, a5.
	q.setCut(false, "a4", "a5")
	q.setCut(true, "a1", "a2")
	c, err = nodes["a5"].Get(ctx, "ns", "k", ReadOptions{Consistency: ConsistencyQuorum})
	if err != nil || c.Value != 1 {
		t.Fatalf("a later quorum read on a5 = %d, %v; want 1 (reads must not go back in time)", c.Value, err)
	}
}

func TestQuorumSingleNodeIsItsOwnQuorum(t *testing.T) {
	n := openTest(t, testConfig(t, vfs.NewMem()))
	ctx := context.Background()
	for _, lvl := range []string{ConsistencyQuorum, ConsistencyAll} {
		if _, err := n.Incr(ctx, "ns", "k", 2, WriteOptions{Consistency: lvl}); err != nil {
			t.Fatalf("%s write on a single node: %v", lvl, err)
		}
	}
	c, err := n.Get(ctx, "ns", "k", ReadOptions{Consistency: ConsistencyQuorum})
	if err != nil || c.Value != 4 {
		t.Fatalf("quorum read on a single node = %d, %v; want 4", c.Value, err)
	}
}

func TestQuorumPeerRPCRefusesBadInput(t *testing.T) {
	n := openTest(t, testConfig(t, vfs.NewMem()))
	ctx := context.Background()
	if _, err := n.PeerState(ctx, "Bad NS", "k"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("PeerState with a bad namespace: err = %v", err)
	}
	if err := n.MergeStates(ctx, []CounterState{{NS: "ns", Key: ""}}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("MergeStates with an empty key: err = %v", err)
	}
	var c crdt.Counter
	if _, err := c.Add(crdt.NodeIDFromName("other"), 7); err != nil {
		t.Fatal(err)
	}
	if err := n.MergeStates(ctx, []CounterState{{NS: "ns", Key: "k", State: c}}); err != nil {
		t.Fatal(err)
	}
	got, err := n.PeerState(ctx, "ns", "k")
	if err != nil || got.Value() != 7 {
		t.Fatalf("PeerState after a merge = %d, %v; want 7", got.Value(), err)
	}
	if v := mustGet(t, n, "ns", "k"); v != 7 {
		t.Fatalf("merged state reads %d, want 7", v)
	}
}
