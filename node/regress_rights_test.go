package node

import (
	"context"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
)

func openRightsMesh(t *testing.T, names, regions []string) *meshSim {
	m := newMeshSim(t, names)
	for i, name := range names {
		cfg := testConfig(t, vfs.NewMem())
		cfg.Name, cfg.Region, cfg.Logger = name, regions[i], zap.NewNop()
		cfg.Peers = simPeers{names, regions}
		cfg.Rights = simRights{m, name}
		n, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		m.set(name, n)
		n.SetPublisher(nil) // exchanges are explicit below
	}
	t.Cleanup(m.close)
	return m
}

// A giver subtracts its gifts only for receivers it "knows" (its version
// vector and the counter's slots). A node that never published a change is
// neither: the giver keeps counting the rights it gave away.
func TestRegressRightsGivenToUnknownNodeAreSpentTwice(t *testing.T) {
	names := []string{"a", "x"}
	regions := []string{"r1", "r1"}
	m := openRightsMesh(t, names, regions)
	ctx := context.Background()
	a, x := m.get("a"), m.get("x")
	putExactMin0(t, a, "likes")
	antiEntropy(t, a, x) // x learns the config; a learns nothing about x
	if _, err := a.Incr(ctx, "likes", "post", 10, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	// x has not seen the counter yet; it asks a for 5 rights and decrements.
	r, err := x.Incr(ctx, "likes", "post", -5, WriteOptions{})
	t.Logf("x -5: %+v %v", r, err)
	// a, before hearing of x's write, spends all 10 it believes it holds.
	r, err = a.Incr(ctx, "likes", "post", -10, WriteOptions{})
	t.Logf("a -10: %+v %v", r, err)
	for _, n := range []*Node{a, x} {
		if err := n.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	antiEntropy(t, a, x)
	antiEntropy(t, x, a)
	for _, n := range []*Node{a, x} {
		st, _, err := n.rep.CounterState("likes", "post")
		if err != nil {
			t.Fatalf("%s: read the counter: %v", n.Name(), err)
		}
		t.Logf("%s raw merged value: %d", n.Name(), st.Value())
		if st.Value() < 0 {
			t.Errorf("%s: the merged value %d crossed min 0", n.Name(), st.Value())
		}
	}
}

// A batch acquires rights for one counter per attempt and gives up after
// three acquisitions: a batch touching four bounded counters on a node
// without rights is refused with 503 although the peer has plenty.
func TestRegressBatchOfFourBoundedCountersGets503(t *testing.T) {
	names := []string{"a", "x"}
	regions := []string{"r1", "r1"}
	m := openRightsMesh(t, names, regions)
	ctx := context.Background()
	a, x := m.get("a"), m.get("x")
	putExactMin0(t, a, "likes")
	var ops []BatchOp
	for _, k := range []string{"k1", "k2", "k3", "k4"} {
		if _, err := a.Incr(ctx, "likes", k, 100, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		ops = append(ops, BatchOp{NS: "likes", Key: k, By: -1})
	}
	if _, err := x.Incr(ctx, "other", "warm", 1, WriteOptions{}); err != nil { // make x known to a
		t.Fatal(err)
	}
	for _, n := range []*Node{a, x} {
		n.Flush(ctx)
	}
	antiEntropy(t, a, x)
	antiEntropy(t, x, a)
	res, err := x.Batch(ctx, ops, "", false)
	t.Logf("batch of 4 decrements on x: %+v %v", res, err)
	if err != nil {
		t.Errorf("batch refused although a holds 100 rights on each counter: %v", err)
	}
}

// A non-bank node answers a rights request only when it holds the counter
// itself; rights it received for a counter it never wrote are invisible to
// its peers, which then get 409 far from the bound.
func TestRegressRightsHeldWithoutCounterAreNotGiven(t *testing.T) {
	names := []string{"a", "x"}
	regions := []string{"r1", "r1"}
	m := openRightsMesh(t, names, regions)
	ctx := context.Background()
	a, x := m.get("a"), m.get("x")
	putExactMin0(t, a, "likes")
	if _, err := x.Incr(ctx, "other", "warm", 1, WriteOptions{}); err != nil { // make x known to a
		t.Fatal(err)
	}
	x.Flush(ctx)
	antiEntropy(t, a, x)
	antiEntropy(t, x, a)
	if _, err := a.Incr(ctx, "likes", "post", 10, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := x.Incr(ctx, "likes", "post", -20, WriteOptions{})
	t.Logf("x -20 (too much): %v", err)
	// x restarts (or evicts the never-saved counter entry).
	cfg := x.cfg
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	x2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x2.Close() })
	m.set("x", x2)
	x2.SetPublisher(nil)
	st, _, err := a.rep.CounterState("likes", "post")
	if err != nil {
		t.Fatalf("read the counter: %v", err)
	}
	r, err := a.Incr(ctx, "likes", "post", -1, WriteOptions{})
	t.Logf("a -1 with the value at %d: %+v %v", st.Value(), r, err)
	if err != nil {
		t.Errorf("a decrement by 1 of a counter at 10 with min 0 was refused: %v", err)
	}
}
