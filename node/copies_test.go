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

// A writer drops its copies of the counters it wrote but does not own once
// every owner holds them, reads them from the owners, and a later write
// continues its slot from the owners' state rather than from 0: without the
// restore, the owners would keep the higher old total and lose the write.
func TestReleasedCopiesAreDroppedAndRestored(t *testing.T) {
	q := newQuorumNet()
	a1 := openQuorumNode(t, q, "a1", "a", 2*time.Second)
	a2 := openQuorumNode(t, q, "a2", "a", 2*time.Second)
	b1 := openQuorumNode(t, q, "b1", "b", 2*time.Second)
	c1 := openQuorumNode(t, q, "c1", "c", 2*time.Second)
	all := []*Node{a1, a2, b1, c1}
	ctx := context.Background()
	for _, n := range all {
		if _, err := n.PutNamespace(ctx, "sh", NamespacePatch{Replicas: ptr(1)}); err != nil {
			t.Fatal(err)
		}
	}
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
	// Anti-entropy from a1 gives a peer below the release mark nothing of
	// the spaces it released (the exchanger's floor), and a peer at the
	// mark the rest.
	for sp, mark := range a1.Replica().Released() {
		if mark == 0 {
			t.Fatalf("space %d has a release mark of 0", sp)
		}
	}
}
