package peerrpc_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip/fakenet"
	"github.com/countmesh/countmesh/internal/wait"
	"github.com/countmesh/countmesh/node"
)

// departedAbove returns a node name whose id sorts after id's: anti-entropy
// sends origins in ascending id order, so a member's chunk reaches the
// receiver before the departed node's own.
func departedAbove(t *testing.T, id crdt.NodeID, prefix string) (string, crdt.NodeID) {
	t.Helper()
	for i := range 1000 {
		name := fmt.Sprintf("%s-%d", prefix, i)
		if d := crdt.NodeIDFromName(name); d > id {
			return name, d
		}
	}
	t.Fatal("no name found")
	return "", 0
}

// A node that starts empty catches up from a member that holds data of
// nodes that left before it came, which it never heard of: a change held
// past a gap of a departed node goes without a range, and a departed node
// whose changes the member no longer holds leaves only its range to send.
// Each of these used to be refused as made-up, and with it the whole
// exchange, on every retry from every peer that held it; the chaos campaign
// lost acknowledged counts of a shard whose wiped owner reported ready
// without them (docs/chaos.md). The member now vouches for the origins it
// holds data of.
func TestCatchUpTakesSlotsOfNodesThatLeftBeforeIt(t *testing.T) {
	nw := fakenet.New(11, 0)
	ctx := context.Background()
	src := startPeerNodes(t, nw, "a", "a1")[0]
	a1 := crdt.NodeIDFromName("a1")
	_, gone := departedAbove(t, a1, "gone")
	_, gap := departedAbove(t, gone, "gap")
	rep := src.node.Replica()
	// gone wrote ns/k (its change 1, with its range) and left; a1 wrote
	// ns/k after it, so a1's change carries gone's slot and supersedes
	// gone's own.
	if err := rep.Apply(change.Batch{
		Ranges: []change.Range{{Origin: gone, After: 0, Upto: 1}},
		Deltas: []change.Delta{{NS: "ns", Key: "k", Origin: gone, Seq: 1, State: crdt.Counter{Slots: []crdt.Slot{{Node: gone, P: 5}}}}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.node.Incr(ctx, "ns", "k", 1, node.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	// gap's change 3 reached a1, its changes 1 and 2 never did: a1 holds it
	// past a gap.
	if err := rep.Apply(change.Batch{
		Ranges: []change.Range{{Origin: gap, After: 2, Upto: 3}},
		Deltas: []change.Delta{{NS: "ns", Key: "g", Origin: gap, Seq: 3, State: crdt.Counter{Slots: []crdt.Slot{{Node: gap, P: 7}}}}},
	}); err != nil {
		t.Fatal(err)
	}
	if got := mustValue(t, src.node, "ns", "g"); got != 7 {
		t.Fatalf("a1's ns/g = %d, want 7", got)
	}
	// a1's vector covers changes 1..5 of spent, and it holds none of them
	// (expired, or released to a shard's owners): only the range is left
	// to send.
	_, spent := departedAbove(t, a1, "spent")
	rep.VouchFor(spent)
	if err := rep.Apply(change.Batch{Ranges: []change.Range{{Origin: spent, After: 0, Upto: 5}}}); err != nil {
		t.Fatal(err)
	}
	if got := rep.VersionVector()[spent]; got != 5 {
		t.Fatalf("a1's vector entry of spent = %d, want 5", got)
	}

	dst := startPeerNodes(t, nw, "a", "a2")[0]
	if _, err := dst.mesh.Join([]string{nw.Host("a1", "a").GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "a2 seeing a1", func() (bool, string) {
		n := alive(dst.mesh)
		return n == 2, fmt.Sprintf("%d alive", n)
	})
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := dst.mesh.SyncOnce(sctx); err != nil {
		t.Fatalf("a2's catch-up from a1: %v", err)
	}
	for key, want := range map[string]int64{"k": 6, "g": 7} {
		if got := mustValue(t, dst.node, "ns", key); got != want {
			t.Errorf("a2's ns/%s after its catch-up = %d, want %d", key, got, want)
		}
	}
	// a2 now knows the departed nodes it holds data of: a member's full
	// state naming them (a quorum write's push) is taken without a vouch.
	dr := dst.node.Replica()
	for name, id := range map[string]crdt.NodeID{"gone": gone, "gap": gap, "spent": spent} {
		if !dr.Known(id) {
			t.Errorf("a2 does not know %s after its catch-up", name)
		}
	}
	if got := dr.VersionVector()[spent]; got != 5 {
		t.Errorf("a2's vector entry of spent = %d, want 5", got)
	}
	st := crdt.Counter{Slots: []crdt.Slot{{Node: a1, P: 1}, {Node: gone, P: 5}, {Node: gap, P: 2}}}
	if err := dst.node.MergeStates(ctx, []node.CounterState{{NS: "ns", Key: "m", State: st}}); err != nil {
		t.Errorf("a full state naming departed nodes, after the catch-up: %v", err)
	}
	// A node that never heard of them still refuses such a state unvouched.
	lone := startPeerNodes(t, fakenet.New(12, 0), "b", "b1")[0]
	if err := lone.node.MergeStates(ctx, []node.CounterState{{NS: "ns", Key: "m", State: st}}); !errors.Is(err, node.ErrInvalidPeerData) {
		t.Errorf("a full state naming unknown nodes at a node that never heard of them: %v, want ErrInvalidPeerData", err)
	}
}

func mustValue(t *testing.T, n *node.Node, ns, key string) int64 {
	t.Helper()
	c, err := n.Get(context.Background(), ns, key, node.ReadOptions{})
	if err != nil {
		t.Fatalf("get %s/%s: %v", ns, key, err)
	}
	return c.Value
}

// A node that starts empty takes the namespace config written by a node
// that left before it came and never wrote a counter: the exchange's only
// news is the config, and no chunk vouched for its writer, so the receiver
// refused the record, and with it the whole exchange, on every retry. The
// config's sender now vouches for its configs' writers.
func TestCatchUpTakesAConfigOfANodeThatLeftBeforeIt(t *testing.T) {
	nw := fakenet.New(23, 0)
	ctx := context.Background()
	src := startShardNode(t, nw, "s1", "a", 0, "")
	t.Cleanup(src.close)
	if _, err := src.node.PutNamespace(ctx, "cfg", node.NamespacePatch{}); err != nil {
		t.Fatal(err)
	}
	// The config as a node that left wrote it: its record, under a departed
	// writer and a later clock.
	_, gone := departedAbove(t, src.node.ID(), "cfg-writer")
	var rec change.ConfigRecord
	for _, cr := range src.node.Replica().Configs() {
		if cr.NS == "cfg" {
			rec = cr
		}
	}
	if rec.NS == "" {
		t.Fatal("no config record of cfg")
	}
	rec.Origin, rec.HLC = gone, rec.HLC+1
	if err := src.node.Replica().Apply(change.Batch{Configs: []change.ConfigRecord{rec}, Vouched: []crdt.NodeID{gone}}); err != nil {
		t.Fatal(err)
	}
	// An empty node catches up from src (startShardNode waits for its
	// first complete exchange) and holds the departed writer's record.
	dst := startShardNode(t, nw, "s2", "a", 0, nw.Host("s1", "a").GossipAddr())
	t.Cleanup(dst.close)
	for _, cr := range dst.node.Replica().Configs() {
		if cr.NS == "cfg" && cr.Origin == gone && cr.HLC == rec.HLC {
			return
		}
	}
	t.Fatalf("s2's configs %+v lack the departed writer's record of cfg", dst.node.Replica().Configs())
}
