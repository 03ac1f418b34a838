package peerrpc_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/gossip/fakenet"
	"github.com/countmesh/countmesh/internal/wait"
	"github.com/countmesh/countmesh/node"
	"github.com/countmesh/countmesh/node/retire"
	"github.com/countmesh/countmesh/peerrpc"
)

// retiredShape returns how many retired slots and live slots a state holds.
func retiredShape(c crdt.Counter) (retired, live int) {
	for _, s := range c.Slots {
		if crdt.IsRetiredID(s.Node) {
			retired++
		} else {
			live++
		}
	}
	return retired, live
}

// twoLiveNodes starts l1 and l2 in region a of a new fake network.
func twoLiveNodes(t *testing.T, seed uint64) (*fakenet.Network, *shardNode, *shardNode) {
	t.Helper()
	nw := fakenet.New(seed, 0)
	l1 := startShardNode(t, nw, "l1", "a", 0, "")
	t.Cleanup(l1.close)
	l2 := startShardNode(t, nw, "l2", "a", 0, nw.Host("l1", "a").GossipAddr())
	t.Cleanup(l2.close)
	return nw, l1, l2
}

// writeOnce starts node name, joining l1, increments ns/key by 1 there and
// waits until every node of live reads 1.
func writeOnce(t *testing.T, nw *fakenet.Network, name, key string, live ...*shardNode) *shardNode {
	t.Helper()
	w := startShardNode(t, nw, name, "a", 0, nw.Host("l1", "a").GossipAddr(), func(c *gossip.Config) { c.LeaveTimeout = 3 * time.Second })
	if _, err := w.node.Incr(context.Background(), "ns", key, 1, node.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, l := range live {
		wait.For(t, 10*time.Second, name+"'s write at "+l.name, func() (bool, string) {
			v := mustValue(t, l.node, "ns", key)
			return v == 1, fmt.Sprint(v)
		})
	}
	return w
}

// Slot compaction (issue 13, acceptance 4): a counter written by 50 nodes
// that then left for good, and by the live nodes, reads the same value with
// one retired slot plus the live writers' slots on every node once the
// mesh forgot them; a node that joins afterwards ends up with the same
// shape; a late change of a forgotten node is folded without counting
// twice, and one made after it was forgotten is refused.
func TestForgottenWritersFoldIntoOneRetiredSlot(t *testing.T) {
	const writers = 50
	nw := fakenet.New(13, 0)
	ctx := context.Background()
	l1 := startShardNode(t, nw, "l1", "a", 0, "")
	t.Cleanup(l1.close)
	seed := nw.Host("l1", "a").GossipAddr()
	l2 := startShardNode(t, nw, "l2", "a", 0, seed)
	t.Cleanup(l2.close)

	value := func(n *node.Node) int64 { return mustValue(t, n, "ns", "k") }
	var want int64
	incr := func(n *node.Node, by int64) {
		t.Helper()
		if _, err := n.Incr(ctx, "ns", "k", by, node.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		want += by
	}
	incr(l1.node, 1000)
	names := make([]string, writers)
	for i := range writers {
		names[i] = fmt.Sprintf("w%02d", i)
		w := startShardNode(t, nw, names[i], "a", 0, seed, func(c *gossip.Config) { c.LeaveTimeout = 3 * time.Second })
		incr(w.node, int64(i+1))
		for _, l := range []*shardNode{l1, l2} {
			wait.For(t, 10*time.Second, names[i]+"'s increment at "+l.name, func() (bool, string) {
				v := value(l.node)
				return v == want, fmt.Sprint(v)
			})
		}
		if i == writers/2 {
			// A reset in the middle: its floor holds the first writers'
			// slots, which fold with them.
			if _, err := l2.node.Reset(ctx, "ns", "k", 7); err != nil {
				t.Fatal(err)
			}
			want = 7
			wait.For(t, 10*time.Second, "the reset at l1", func() (bool, string) {
				v := value(l1.node)
				return v == want, fmt.Sprint(v)
			})
		}
		if err := w.mesh.Leave(); err != nil {
			t.Fatal(err)
		}
		w.close()
	}
	incr(l2.node, 2000)
	for _, l := range []*shardNode{l1, l2} {
		wait.For(t, 10*time.Second, "the live writers' increments at "+l.name, func() (bool, string) {
			v := value(l.node)
			return v == want, fmt.Sprint(v)
		})
		c, _, err := l.node.Replica().CounterState("ns", "k")
		if err != nil {
			t.Fatal(err)
		}
		if r, live := retiredShape(c); r != 0 || live != writers+2 {
			t.Fatalf("%s holds %d retired and %d live slots before the forget, want 0 and %d", l.name, r, live, writers+2)
		}
	}

	// Refused, changing nothing: a live member, this node, a name that
	// never wrote.
	for _, name := range []string{"l2", "l1", "never-here"} {
		if _, _, err := peerrpc.Forget(ctx, l1.client, l1.node, name, false); err == nil {
			t.Fatalf("forget %s: no error", name)
		}
	}
	if got := l1.node.Retired(); len(got) != 0 {
		t.Fatalf("refused forgets left %d entries", len(got))
	}

	// A node that left may come back (a restart leaves too): the mesh
	// lists it for a day, and forgetting it needs the operator's word.
	if _, _, err := peerrpc.Forget(ctx, l1.client, l1.node, names[0], false); err == nil || !strings.Contains(err.Error(), "may come back") {
		t.Fatalf("forgetting a node that left, without gone: %v", err)
	}

	// Forget them, half at each live node.
	for i, name := range names {
		coord := l1
		if i%2 == 1 {
			coord = l2
		}
		e, index, err := peerrpc.Forget(ctx, coord.client, coord.node, name, true)
		if err != nil {
			t.Fatalf("forget %s: %v", name, err)
		}
		if e.Name != name || index != i || len(e.IDs) != 1 || e.IDs[0] != crdt.NodeIDFromName(name) {
			t.Fatalf("forget %s: entry %d %+v", name, index, e)
		}
	}
	again, index, err := peerrpc.Forget(ctx, l2.client, l2.node, names[3], true)
	if err != nil || index != 3 || again.Name != names[3] {
		t.Fatalf("forgetting %s twice: entry %d %+v, %v; want its entry 3", names[3], index, again, err)
	}

	gen := uint64(writers)
	folded := func(l *shardNode) {
		t.Helper()
		wait.For(t, 20*time.Second, l.name+" folding the forgotten writers", func() (bool, string) {
			c, _, err := l.node.Replica().CounterState("ns", "k")
			if err != nil {
				return false, err.Error()
			}
			r, live := retiredShape(c)
			return r == 1 && live == 2 && c.Gen() == gen, fmt.Sprintf("fold generation %d, state at %d: %d retired and %d live slots", l.node.FoldGen(), c.Gen(), r, live)
		})
		if v := value(l.node); v != want {
			t.Fatalf("%s reads %d after the fold, want %d", l.name, v, want)
		}
	}
	folded(l1)
	folded(l2)

	// A node that joins afterwards catches up from folded states.
	// It asks for the retired list when a peer's chunk is folded beyond
	// its own.
	l3 := startShardNode(t, nw, "l3", "a", 0, seed)
	t.Cleanup(l3.close)
	wait.For(t, 20*time.Second, "l3's retired list", func() (bool, string) {
		return len(l3.node.Retired()) == writers, fmt.Sprint(len(l3.node.Retired()))
	})
	folded(l3)
	for _, l := range []*shardNode{l1, l2, l3} {
		if v := value(l.node); v != want {
			t.Fatalf("%s reads %d, want %d", l.name, v, want)
		}
	}

	// A late change of a forgotten writer (its one change, as a peer held
	// it) is folded on receipt: nothing counts twice.
	w3 := crdt.NodeIDFromName(names[3])
	late := change.Batch{Deltas: []change.Delta{{NS: "ns", Key: "k", Origin: w3, Seq: 1,
		State: crdt.Counter{Slots: []crdt.Slot{{Node: w3, P: 4}}}}}}
	if err := l2.node.Replica().Apply(late); err != nil {
		t.Fatalf("a late change of a forgotten writer: %v", err)
	}
	c, _, err := l2.node.Replica().CounterState("ns", "k")
	if err != nil {
		t.Fatal(err)
	}
	if r, live := retiredShape(c); r != 1 || live != 2 || c.Value() != want {
		t.Fatalf("after a late change: %d retired, %d live slots, value %d; want 1, 2, %d", r, live, c.Value(), want)
	}
	// One it made after it was forgotten is refused.
	late.Deltas[0].Seq, late.Deltas[0].State.Slots[0].P = 2, 100
	if err := l2.node.Replica().Apply(late); !errors.Is(err, node.ErrInvalidPeerData) {
		t.Fatalf("a change of a forgotten writer after its cut: %v, want ErrInvalidPeerData", err)
	}
	if v := value(l2.node); v != want {
		t.Fatalf("l2 reads %d after the refused change, want %d", v, want)
	}

	// A name comes back (a new incarnation: a new slot), writes and leaves
	// for good again: forgetting it again forgets its new slot.
	w := startShardNode(t, nw, names[0], "a", 1, seed, func(c *gossip.Config) { c.LeaveTimeout = 3 * time.Second })
	incr(w.node, 11)
	for _, l := range []*shardNode{l1, l2, l3} {
		wait.For(t, 10*time.Second, "the new incarnation's increment at "+l.name, func() (bool, string) {
			v := value(l.node)
			return v == want, fmt.Sprint(v)
		})
	}
	if err := w.mesh.Leave(); err != nil {
		t.Fatal(err)
	}
	w.close()
	second, index, err := peerrpc.Forget(ctx, l3.client, l3.node, names[0], true)
	if err != nil || index != writers || len(second.IDs) != 1 || second.IDs[0] != crdt.NodeIDOf(names[0], 1) {
		t.Fatalf("forgetting %s's second life: entry %d %+v, %v", names[0], index, second, err)
	}
	gen++
	folded(l1)
	folded(l2)
	folded(l3)
}

// A coordinator that stopped after some members accepted its entry
// leaves it to the next forget, which completes that entry first (one
// value per index), then decides its own at the next index.
func TestForgetCompletesAnAcceptedEntryFirst(t *testing.T) {
	ctx := context.Background()
	nw, l1, l2 := twoLiveNodes(t, 17)
	for _, name := range []string{"x", "y"} {
		w := writeOnce(t, nw, name, name, l1, l2)
		if err := w.mesh.Leave(); err != nil {
			t.Fatal(err)
		}
		w.close()
	}
	// The stopped coordinator's entry for index 0, forgetting x, as l2
	// accepted it under the coordinator's ballot.
	x := crdt.NodeIDFromName("x")
	accepted := retire.Entry{Name: "x", IDs: []crdt.NodeID{x}, Cut: []retire.OriginSeq{{Origin: x, Seq: 1}}}
	ballot := retire.Ballot{Round: 1, Node: 12345}
	if _, _, _, err := l2.node.RetirePrepare(0, ballot, nil); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := l2.node.RetireAccept(0, ballot, accepted); !ok || err != nil {
		t.Fatalf("l2 accepting: %v, %v", ok, err)
	}
	e, index, err := peerrpc.Forget(ctx, l1.client, l1.node, "y", true)
	if err != nil || index != 1 || e.Name != "y" {
		t.Fatalf("forget y: entry %d %+v, %v; want index 1, after x", index, e, err)
	}
	for _, l := range []*shardNode{l1, l2} {
		got := l.node.Retired()
		if len(got) != 2 || !got[0].Equal(accepted) || got[1].Name != "y" {
			t.Fatalf("%s's list: %+v, want x (the accepted entry, as accepted), then y", l.name, got)
		}
	}
}

// A node the mesh sees as dead may come back with its data, and would then
// have what it writes refused by every node: forgetting it needs the
// operator's word that it is gone.
func TestForgetDeadNodeNeedsGone(t *testing.T) {
	ctx := context.Background()
	nw, l1, l2 := twoLiveNodes(t, 19)
	z := writeOnce(t, nw, "z", "k", l1, l2)
	nw.Host("z", "a").Down() // crashed: no leave
	t.Cleanup(z.close)
	wait.For(t, 10*time.Second, "z dead at l1 and l2", func() (bool, string) {
		for _, l := range []*shardNode{l1, l2} {
			for _, m := range l.mesh.Status().Members {
				if m.Name == "z" && m.State != gossip.StateDead {
					return false, l.name + " sees z " + m.State
				}
			}
		}
		return true, ""
	})
	if _, _, err := peerrpc.Forget(ctx, l1.client, l1.node, "z", false); err == nil || !strings.Contains(err.Error(), "may come back") {
		t.Fatalf("forgetting a dead node without gone: %v", err)
	}
	if got := l1.node.Retired(); len(got) != 0 {
		t.Fatalf("a refused forget left %+v", got)
	}
	e, _, err := peerrpc.Forget(ctx, l1.client, l1.node, "z", true)
	if err != nil || e.Name != "z" {
		t.Fatalf("forgetting a dead node with gone: %+v, %v", e, err)
	}
}
