package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
)

func (t netTransport) Covers(ctx context.Context, p Peer, spaces []crdt.NodeID, keys []KeyRef) ([]uint64, []crdt.Counter, error) {
	n, err := t.target(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	upto, sts, err := n.PeerCovers(ctx, spaces, keys)
	for i := range sts {
		sts[i] = sts[i].Clone() // as the wire would
	}
	return upto, sts, err
}

// shardedMesh opens a1 and a2 in region a, b1 in b and c1 in c on one
// quorum net, with the namespace "sh" sharded over one replica per region
// on each.
func shardedMesh(t *testing.T) (q *quorumNet, a1, a2, b1, c1 *Node) {
	t.Helper()
	q = newQuorumNet()
	a1 = openQuorumNode(t, q, "a1", "a", 2*time.Second)
	a2 = openQuorumNode(t, q, "a2", "a", 2*time.Second)
	b1 = openQuorumNode(t, q, "b1", "b", 2*time.Second)
	c1 = openQuorumNode(t, q, "c1", "c", 2*time.Second)
	for _, n := range []*Node{a1, a2, b1, c1} {
		if _, err := n.PutNamespace(context.Background(), "sh", NamespacePatch{Replicas: ptr(1)}); err != nil {
			t.Fatal(err)
		}
	}
	return q, a1, a2, b1, c1
}

// A writer drops its copies of the counters it wrote but does not own once
// every owner holds them, reads them from the owners, and a later write
// continues its slot from the owners' state rather than from 0: without the
// restore, the owners would keep the higher old total and lose the write.
func TestReleasedCopiesAreDroppedAndRestored(t *testing.T) {
	q, a1, a2, b1, c1 := shardedMesh(t)
	ctx := context.Background()
	pub := newDirect(t, a2, b1, c1)
	a1.SetPublisher(pub)
	const keys = 200
	want := map[string]int64{}
	owned := map[string]bool{}
	m := a1.memberSnapshot()
	for i := range keys {
		k := fmt.Sprintf("k%d", i)
		for range 3 {
			if _, err := a1.Incr(ctx, "sh", k, int64(i+1), WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			want[k] += int64(i + 1)
		}
		_, _, owned[k] = m.shardOwners(change.ShardOf("sh", k, 1))
	}
	if err := a1.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	pub.wait()
	notOwned := 0
	for _, o := range owned {
		if !o {
			notOwned++
		}
	}
	if notOwned == 0 || notOwned == keys {
		t.Fatalf("a1 owns %d of %d keys; the test needs some of each", keys-notOwned, keys)
	}
	dropped, err := a1.ReleaseCopies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if dropped != notOwned {
		t.Fatalf("released %d counters, want the %d a1 does not own", dropped, notOwned)
	}
	for k, o := range owned {
		held, err := a1.Replica().Held("sh", k)
		if err != nil {
			t.Fatal(err)
		}
		if held != o {
			t.Fatalf("a1 holds %s: %v; it owns it: %v", k, held, o)
		}
		if v := localValue(t, a1, "sh", k); v != want[k] {
			t.Fatalf("a1 reads %s = %d after releasing it, want %d", k, v, want[k])
		}
	}
	// A second pass has nothing left to drop.
	if again, err := a1.ReleaseCopies(ctx); err != nil || again != 0 {
		t.Fatalf("second release pass: %d, %v; want 0, nil", again, err)
	}
	// An owner's anti-entropy may hand a released counter back, a1's slot
	// at the total a1 dropped: a1 takes it, though no peer may otherwise
	// raise its slot (and a refusal would fail the whole exchange).
	for k, o := range owned {
		if o {
			continue
		}
		st, _, err := b1.Replica().CounterState("sh", k)
		if err != nil {
			t.Fatal(err)
		}
		s := change.ShardOf("sh", k, 1)
		b := change.Batch{Deltas: []change.Delta{{NS: "sh", Key: k, Origin: s.Space(a1.ID()), Seq: 1, State: st}}}
		if err := a1.Replica().Apply(b); err != nil {
			t.Fatalf("a1 refuses an owner's state of %s it released: %v", k, err)
		}
		if v := localValue(t, a1, "sh", k); v != want[k] {
			t.Fatalf("a1 reads %s = %d after taking it back, want %d", k, v, want[k])
		}
		if _, err := a1.ReleaseCopies(ctx); err != nil {
			t.Fatal(err)
		}
		break
	}

	// Writes continue the released slots: the answer and every owner
	// count all of a1's increments.
	for i := range keys {
		k := fmt.Sprintf("k%d", i)
		r, err := a1.Incr(ctx, "sh", k, 1, WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want[k]++
		if r.Value != want[k] {
			t.Fatalf("a1's write of %s answered %d, want %d", k, r.Value, want[k])
		}
	}
	if err := a1.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	pub.wait()
	for _, n := range []*Node{a2, b1, c1} {
		for k, w := range want {
			st, _, err := n.Replica().CounterState("sh", k)
			if err != nil {
				t.Fatal(err)
			}
			if got := int64(st.Slot(a1.ID()).P); got != w {
				t.Fatalf("%s holds a1's slot of %s at %d, want %d", n.Name(), k, got, w)
			}
		}
	}
	// Released again, and a batch write restores many at once.
	if _, err := a1.ReleaseCopies(ctx); err != nil {
		t.Fatal(err)
	}
	var ops []BatchOp
	for i := range keys {
		k := fmt.Sprintf("k%d", i)
		ops = append(ops, BatchOp{NS: "sh", Key: k, By: 2})
		want[k] += 2
	}
	if _, err := a1.Batch(ctx, ops, "", false); err != nil {
		t.Fatal(err)
	}
	for k, w := range want {
		if v := localValue(t, a1, "sh", k); v != w {
			t.Fatalf("a1 reads %s = %d after a batch over released counters, want %d", k, v, w)
		}
	}

	// With every owner out of reach, a write of a released counter is
	// refused and changes nothing here.
	if err := a1.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	pub.wait()
	if _, err := a1.ReleaseCopies(ctx); err != nil {
		t.Fatal(err)
	}
	var victim string
	for k, o := range owned {
		if !o {
			victim = k
			break
		}
	}
	q.setCut(true, "a1")
	_, err = a1.Incr(ctx, "sh", victim, 1, WriteOptions{})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("write of a released counter with no owner in reach: %v, want ErrUnavailable", err)
	}
	if held, _ := a1.Replica().Held("sh", victim); held {
		t.Fatal("the refused write left a copy of the counter")
	}
	q.setCut(false, "a1")
	if v := localValue(t, a1, "sh", victim); v != want[victim] {
		t.Fatalf("a1 reads %s = %d after the refused write, want %d", victim, v, want[victim])
	}
}

// A writer keeps its copies while an owner has not taken them, or when a
// shard has a single owner besides it.
func TestReleaseWaitsForEveryOwner(t *testing.T) {
	q := newQuorumNet()
	a1 := openQuorumNode(t, q, "a1", "a", time.Second)
	a2 := openQuorumNode(t, q, "a2", "a", time.Second)
	b1 := openQuorumNode(t, q, "b1", "b", time.Second)
	ctx := context.Background()
	for _, n := range []*Node{a1, a2, b1} {
		if _, err := n.PutNamespace(ctx, "sh", NamespacePatch{Replicas: ptr(1)}); err != nil {
			t.Fatal(err)
		}
	}
	pub := newDirect(t, a2) // b1 never gets the changes
	a1.SetPublisher(pub)
	for i := range 100 {
		if _, err := a1.Incr(ctx, "sh", fmt.Sprintf("k%d", i), 1, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a1.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	pub.wait()
	if n, err := a1.ReleaseCopies(ctx); err != nil || n != 0 {
		t.Fatalf("released %d counters (%v) while b1 holds none of them", n, err)
	}
	// b1 catches up: now every owner holds them.
	antiEntropy(t, a1, b1)
	n, err := a1.ReleaseCopies(ctx)
	if err != nil || n == 0 {
		t.Fatalf("released %d counters (%v) once every owner held them", n, err)
	}
	// Every space it released has a mark.
	for sp, mark := range a1.Replica().ReleaseMarks() {
		if mark.Upto == 0 {
			t.Fatalf("space %d has a release mark of 0", sp)
		}
	}
}

// A node drops what it holds of other writers' changes to shards it does
// not own (a hand-over, a shard that moved away) once every owner holds
// them, reads those counters from the owners, and once it owns the shard
// again takes every change of the space back from a co-owner (a range from
// 0, as anti-entropy sends it against the 0 the node advertises), which
// clears the release.
func TestReleasedOtherWritersCopiesAndRefill(t *testing.T) {
	q, a1, a2, b1, c1 := shardedMesh(t)
	ctx := context.Background()
	pub := newDirect(t, a2, b1, c1) // a2 gets every change, owner or not
	a1.SetPublisher(pub)
	const keys = 200
	owned := map[string]bool{}
	m := a2.memberSnapshot()
	for i := range keys {
		k := fmt.Sprintf("k%d", i)
		if _, err := a1.Incr(ctx, "sh", k, int64(i+1), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		_, _, owned[k] = m.shardOwners(change.ShardOf("sh", k, 1))
	}
	if err := a1.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	pub.wait()
	notOwned := 0
	for _, o := range owned {
		if !o {
			notOwned++
		}
	}
	dropped, err := a2.ReleaseCopies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if dropped != notOwned {
		t.Fatalf("a2 released %d counters, want the %d it does not own", dropped, notOwned)
	}
	for i := range keys {
		k := fmt.Sprintf("k%d", i)
		if held, _ := a2.Replica().Held("sh", k); held != owned[k] {
			t.Fatalf("a2 holds %s: %v; owns it: %v", k, held, owned[k])
		}
		if v := localValue(t, a2, "sh", k); v != int64(i+1) {
			t.Fatalf("a2 reads %s = %d after releasing it, want %d", k, v, i+1)
		}
	}

	// a1 goes: a2 owns region a's every shard now, and answers for those
	// it released from the other regions' owners until it takes them back.
	q.setAlive("a1", false)
	for i := range keys {
		k := fmt.Sprintf("k%d", i)
		if v := localValue(t, a2, "sh", k); v != int64(i+1) {
			t.Fatalf("a2 reads %s = %d as the owner of a shard it released, want %d", k, v, i+1)
		}
	}
	marks := a2.Replica().ReleaseMarks()
	if len(marks) == 0 {
		t.Fatal("a2 has no release marks")
	}
	// Meanwhile a2 covers nothing of a space it released (a writer must
	// not drop a copy on its word) and refuses peers' reads of the shard
	// (its state may lack what it released).
	var released string
	for k, o := range owned {
		if !o {
			released = k
			break
		}
	}
	for sp := range marks {
		upto, _, err := a2.PeerCovers(ctx, []crdt.NodeID{sp}, nil)
		if err != nil || upto[0] != 0 {
			t.Fatalf("a2 covers %v (%v) of space %d it released; want 0", upto, err, sp)
		}
	}
	if _, err := a2.PeerState(ctx, "sh", released); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a2 answers a peer's read of %s, which it released: %v; want ErrUnavailable", released, err)
	}
	// A read of every owner does not count the one that released part of
	// the shard: the others hold it all. With b1 gone too, c1, an owner
	// itself, answers from its own state.
	q.setAlive("b1", false)
	c, err := c1.Get(ctx, "sh", released, ReadOptions{Consistency: ConsistencyAll})
	q.setAlive("b1", true)
	if want := localValue(t, b1, "sh", released); err != nil || c.Value != want {
		t.Fatalf("c1 reads %s at all with a2 refusing and b1 gone: %+v, %v; want %d", released, c, err, want)
	}
	for i := range keys {
		k := fmt.Sprintf("k%d", i)
		c, err := c1.Get(ctx, "sh", k, ReadOptions{Consistency: ConsistencyAll})
		if err != nil || c.Value != int64(i+1) {
			t.Fatalf("c1 reads %s at all with a2's refusal: %+v, %v; want %d", k, c, err, i+1)
		}
	}
	vv := b1.Replica().VersionVector()
	// a2 reads its vector and scans, as an exchange does, so that the
	// scans below find no read of the vector since a checkpoint.
	a2.Replica().VersionVector()
	if err := a2.Replica().ScanSince(a2.ID(), 0, func(change.Delta) bool { return true }); err != nil {
		t.Fatal(err)
	}
	refilled := map[crdt.NodeID][]string{}
	for sp := range marks {
		b := change.Batch{Ranges: []change.Range{{Origin: sp, After: 0, Upto: vv[sp]}}}
		if err := b1.Replica().ScanSince(sp, 0, func(d change.Delta) bool {
			b.Deltas = append(b.Deltas, d)
			refilled[sp] = append(refilled[sp], d.Key)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if err := a2.Replica().Apply(b); err != nil {
			t.Fatal(err)
		}
	}
	if left := a2.Replica().ReleaseMarks(); len(left) != 0 {
		t.Fatalf("a2 still has release marks after taking every space back: %v", left)
	}
	// The refill cleared the marks, so anti-entropy's floor of each space
	// is 0 now: a scan from there must find what came back, though no
	// checkpoint has indexed it and the vector was not read again (a range
	// claiming those changes without them loses them at the receiver).
	for sp, keys := range refilled {
		found := map[string]bool{}
		if err := a2.Replica().ScanSince(sp, a2.Replica().ReleasedThrough(sp), func(d change.Delta) bool {
			found[d.Key] = true
			return true
		}); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if !found[k] {
				t.Fatalf("a2's scan of space %d after the refill misses %s (found %d of %d)", sp, k, len(found), len(keys))
			}
		}
	}
	for i := range keys {
		k := fmt.Sprintf("k%d", i)
		if held, _ := a2.Replica().Held("sh", k); !held {
			t.Fatalf("a2 does not hold %s after the refill", k)
		}
		st, _, err := a2.Replica().CounterState("sh", k)
		if err != nil || st.Value() != int64(i+1) {
			t.Fatalf("a2's own state of %s after the refill: %d, %v; want %d", k, st.Value(), err, i+1)
		}
	}
	if _, err := a2.PeerState(ctx, "sh", released); err != nil {
		t.Fatalf("a2 refuses a peer's read of %s after taking it back: %v", released, err)
	}
	// It answers from its own state again: with every other owner out of
	// reach, a local read still works.
	q.setCut(true, "a2")
	defer q.setCut(false, "a2")
	if v := localValue(t, a2, "sh", "k7"); v != 8 {
		t.Fatalf("a2 reads k7 = %d alone after the refill, want 8", v)
	}
}
