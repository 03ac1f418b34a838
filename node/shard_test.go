package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
)

// regionsOfOne is a mesh of nodes each alone in its region: with replicas
// 1 every node owns every counter, so reads stay local.
type regionsOfOne []string

func (r regionsOfOne) Peers() []Peer {
	out := make([]Peer, len(r))
	for i, name := range r {
		out[i] = Peer{Name: name, Region: "r-" + name, Alive: true}
	}
	return out
}

func openSharded(t *testing.T, name string, fs vfs.FS, peers Peers) *Node {
	t.Helper()
	cfg := testConfig(t, fs)
	cfg.Name = name
	cfg.Region = "r-" + name
	cfg.Peers = peers
	return openTest(t, cfg)
}

func TestShardedNamespaceConfig(t *testing.T) {
	n := openTest(t, testConfig(t, vfs.NewMem()))
	ctx := context.Background()
	got, err := n.PutNamespace(ctx, "sh", NamespacePatch{Replicas: ptr(2)})
	if err != nil || got.Config.Replicas != 2 {
		t.Fatalf("create with replicas 2: %+v, %v", got, err)
	}
	if r := n.ReplicasOf("sh"); r != 2 {
		t.Fatalf("ReplicasOf = %d, want 2", r)
	}
	// Other fields may change; replicas may not.
	if _, err := n.PutNamespace(ctx, "sh", NamespacePatch{Durability: ptr(DurabilityAsync)}); err != nil {
		t.Fatalf("a durability change: %v", err)
	}
	for _, r := range []int{0, 3} {
		if _, err := n.PutNamespace(ctx, "sh", NamespacePatch{Replicas: ptr(r)}); !errors.Is(err, ErrConflict) {
			t.Errorf("replicas 2 -> %d: %v, want ErrConflict", r, err)
		}
	}
	if _, err := n.PutNamespace(ctx, "sh", NamespacePatch{Replicas: ptr(2)}); err != nil {
		t.Errorf("replicas 2 -> 2: %v", err)
	}
	for name, p := range map[string]NamespacePatch{
		"negative":    {Replicas: ptr(-1)},
		"toomany":     {Replicas: ptr(change.MaxReplicas + 1)},
		"exact":       {Replicas: ptr(1), Type: ptr(TypeExact)},
		"approximate": {Replicas: ptr(1), Type: ptr(TypeApproximate)},
		"windows":     {Replicas: ptr(1), Windows: ptr([]string{"1m"})},
		"ttl":         {Replicas: ptr(1), TTL: ptr("1h")},
		"bounds":      {Replicas: ptr(1), Min: NullableInt{Set: true, Value: ptr(int64(0))}},
	} {
		if _, err := n.PutNamespace(ctx, "bad-"+name, p); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
		if _, err := n.GetNamespace("bad-" + name); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: the refused namespace exists: %v", name, err)
		}
	}
}

// What a sharded namespace does not do yet is refused, and the refusal
// changes nothing.
func TestShardedRefusals(t *testing.T) {
	n := openSharded(t, "n1", vfs.NewMem(), regionsOfOne{"n1"})
	ctx := context.Background()
	if _, err := n.PutNamespace(ctx, "sh", NamespacePatch{Replicas: ptr(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Incr(ctx, "sh", "k", 5, WriteOptions{}); err != nil {
		t.Fatalf("a plain increment: %v", err)
	}
	refused := map[string]error{}
	_, refused["id"] = n.Incr(ctx, "sh", "k", 1, WriteOptions{ID: "x1"})
	_, refused["labels"] = n.Incr(ctx, "sh", "k", 1, WriteOptions{Labels: map[string]string{"a": "b"}})
	_, refused["quorum write"] = n.Incr(ctx, "sh", "k", 1, WriteOptions{Consistency: ConsistencyQuorum})
	_, refused["batch id"] = n.Batch(ctx, []BatchOp{{NS: "sh", Key: "k", By: 1}, {NS: "sh", Key: "k", By: 1, ID: "x2"}}, "", false)
	_, refused["batch all"] = n.Batch(ctx, []BatchOp{{NS: "sh", Key: "k", By: 1}}, ConsistencyAll, false)
	_, refused["list"] = n.List(ctx, "sh", "", "", 10)
	_, refused["top"] = n.Top(ctx, "sh", 10, "", "")
	_, refused["aggregate"] = n.Aggregate(ctx, "sh", "", "", "")
	_, refused["watch"] = n.Subscribe("sh", "k", "")
	_, refused["changed since"] = n.ChangedSince(ctx, "sh", "", time.Now().Add(-time.Hour), 10)
	_, refused["series"] = n.Series(ctx, "sh", "k", time.Now().Add(-time.Hour), time.Now(), time.Minute)
	_, refused["at"] = n.Get(ctx, "sh", "k", ReadOptions{At: time.Now()})
	for what, err := range refused {
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s on a sharded namespace: %v, want ErrInvalidArgument", what, err)
		}
	}
	if v := mustGet(t, n, "sh", "k"); v != 5 {
		t.Fatalf("sh/k = %d after the refusals, want 5", v)
	}
}

// A node numbers its own changes of a sharded namespace per shard, in the
// shard's sequence space: its vector gets one entry per space, the batches
// it publishes carry the spaces with the node's slot in the state, a peer
// merges them, a scan of a space hands out the writer's slot (so a third
// node catches up from the peer), and a restart continues each space's
// sequence.
func TestShardedChangesNumberedPerShard(t *testing.T) {
	fs1 := vfs.NewMem()
	peers := regionsOfOne{"n1", "n2", "n3"}
	n1 := openSharded(t, "n1", fs1, peers)
	n2 := openSharded(t, "n2", vfs.NewMem(), peers)
	ctx := context.Background()
	for _, n := range []*Node{n1, n2} {
		if _, err := n.PutNamespace(ctx, "sh", NamespacePatch{Replicas: ptr(1)}); err != nil {
			t.Fatal(err)
		}
	}
	toN2 := newDirect(t, n2)
	n1.SetPublisher(toN2)
	const keys = 40
	wantSpaces := map[crdt.NodeID]uint64{}
	for i := range keys {
		k := fmt.Sprintf("k%d", i)
		if _, err := n1.Incr(ctx, "sh", k, int64(i+1), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		wantSpaces[change.ShardOf("sh", k, 1).Space(n1.ID())]++
	}
	if err := n1.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	toN2.wait()
	vv1, vv2 := n1.Replica().VersionVector(), n2.Replica().VersionVector()
	for sp, n := range wantSpaces {
		if vv1[sp] != n || vv2[sp] != n {
			t.Errorf("space %d: n1's vector %d, n2's %d; want %d", sp, vv1[sp], vv2[sp], n)
		}
	}
	if vv1[n1.ID()] != 0 {
		t.Errorf("n1 numbered %d changes of a sharded namespace under its own id", vv1[n1.ID()])
	}
	for i := range keys {
		if v := mustGet(t, n2, "sh", fmt.Sprintf("k%d", i)); v != int64(i+1) {
			t.Fatalf("n2 reads k%d = %d, want %d", i, v, i+1)
		}
	}
	// A third node catches up from n2, which holds n1's spaces.
	n3 := openSharded(t, "n3", vfs.NewMem(), peers)
	antiEntropy(t, n2, n3)
	for i := range keys {
		k := fmt.Sprintf("k%d", i)
		if v := mustGet(t, n3, "sh", k); v != int64(i+1) {
			t.Fatalf("n3 reads %s = %d after catching up from n2, want %d", k, v, i+1)
		}
		st, _, err := n3.Replica().CounterState("sh", k)
		if err != nil || st.Slot(n1.ID()).P != uint64(i+1) {
			t.Fatalf("n3's state of %s: %+v, %v; want n1's slot at %d", k, st, err, i+1)
		}
	}
	// A node that never knew n1 (it left before this one came) takes n1's
	// spaces from n2 all the same: a space n2 sends with its range vouches
	// for its writer's slot.
	n4 := openSharded(t, "n4", vfs.NewMem(), regionsOfOne{"n2", "n4"})
	antiEntropy(t, n2, n4)
	for i := range keys {
		if v := mustGet(t, n4, "sh", fmt.Sprintf("k%d", i)); v != int64(i+1) {
			t.Fatalf("n4 reads k%d = %d after catching up from n2, want %d", i, v, i+1)
		}
	}
	// A restart continues every space's sequence.
	n1.Close()
	n1 = openSharded(t, "n1", fs1, peers)
	n1.SetPublisher(toN2)
	if _, err := n1.Incr(ctx, "sh", "k0", 1, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := n1.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	toN2.wait()
	sp := change.ShardOf("sh", "k0", 1).Space(n1.ID())
	if got := n1.Replica().VersionVector()[sp]; got != wantSpaces[sp]+1 {
		t.Fatalf("after a restart the space of k0 is at %d, want %d", got, wantSpaces[sp]+1)
	}
	if got := n2.Replica().VersionVector()[sp]; got != wantSpaces[sp]+1 {
		t.Fatalf("n2's vector for the space of k0 is at %d after n1's restart, want %d", got, wantSpaces[sp]+1)
	}
	if v := mustGet(t, n2, "sh", "k0"); v != 2 {
		t.Fatalf("n2 reads k0 = %d, want 2", v)
	}
}

// A space vouches for nothing by itself: a delta in the space of a node
// that is neither a member nor an origin this node holds, sent without a
// range that carries it (the sending member's word, as for any origin), is
// refused.
func TestShardedSpaceOfAStrangerRefused(t *testing.T) {
	n := openSharded(t, "n1", vfs.NewMem(), regionsOfOne{"n1", "n2"})
	stranger := crdt.NodeIDFromName("stranger")
	var c crdt.Counter
	if _, err := c.Add(stranger, 7); err != nil {
		t.Fatal(err)
	}
	sp := change.ShardOf("sh", "k", 1).Space(stranger)
	err := n.Replica().Apply(change.Batch{
		Deltas: []change.Delta{{NS: "sh", Key: "k", Origin: sp, Seq: 1, State: c}},
	})
	if !errors.Is(err, ErrInvalidPeerData) {
		t.Fatalf("a stranger's space: %v, want ErrInvalidPeerData", err)
	}
	if v := mustGet(t, n, "sh", "k"); v != 0 {
		t.Fatalf("sh/k = %d after a refused batch", v)
	}
}
