package node

import (
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
)

// TestPushedChangeHasAPlaceInTheVector: a change that reached a node only
// by a quorum push (its origin was killed, then lost its disk, before its
// stream sent it) must still reach the others by anti-entropy. Found by
// the chaos campaign (seed 3722273669189070260): n4 held the wiped n3's
// last increment of a counter from a push, n1, n2 and n5 never got it, and
// as n4's version vector did not count it, no exchange carried it.
func TestPushedChangeHasAPlaceInTheVector(t *testing.T) {
	ctx := context.Background()
	open := func(name string) *Node {
		cfg := testConfig(t, vfs.NewMem())
		cfg.Name = name
		return openTest(t, cfg)
	}
	a, b, c := open("n1"), open("n2"), open("n3")
	incr := func(key string) {
		t.Helper()
		if _, err := a.Incr(ctx, "ns", key, 1, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := a.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	incr("k1")
	incr("k2")
	antiEntropy(t, a, b)
	antiEntropy(t, a, c)
	push := func(key string) {
		t.Helper()
		st, seq, err := a.rep.OwnChange("ns", key)
		if err != nil || seq == 0 {
			t.Fatalf("own change of %s: seq %d, %v", key, seq, err)
		}
		if err := b.MergeStates(ctx, []CounterState{{NS: "ns", Key: key, State: st, Origin: a.ID(), Seq: seq}}); err != nil {
			t.Fatal(err)
		}
	}

	// The next change reaches b by a push only; a is then gone for good.
	incr("k3")
	push("k3")
	if got, want := b.Replica().VersionVector()[a.ID()], a.Replica().VersionVector()[a.ID()]; got != want {
		t.Fatalf("b's vector of a after the push: %d, want %d", got, want)
	}
	antiEntropy(t, b, c) // c never hears from a again
	if got := mustGet(t, c, "ns", "k3"); got != 1 {
		t.Fatalf("c reads k3 = %d after anti-entropy with b, want 1", got)
	}

	// A push that skips a change does not move the vector past the gap;
	// once the gap is filled, the vector covers both.
	incr("k4")
	incr("k5")
	before := b.Replica().VersionVector()[a.ID()]
	push("k5")
	if got := b.Replica().VersionVector()[a.ID()]; got != before {
		t.Fatalf("b's vector moved over a gap: %d, was %d", got, before)
	}
	push("k4")
	if got := b.Replica().VersionVector()[a.ID()]; got != before+2 {
		t.Fatalf("b's vector after the missing change: %d, want %d", got, before+2)
	}
	antiEntropy(t, b, c)
	for _, k := range []string{"k4", "k5"} {
		if got := mustGet(t, c, "ns", k); got != 1 {
			t.Fatalf("c reads %s = %d, want 1", k, got)
		}
	}
}

// A change held past a gap is offered by anti-entropy (HeldAhead), also
// after a restart: the held list is not saved, so recovery finds it again
// in the (origin, seq) index. Without that, a node that restarted would
// never offer a change of an origin gone for good to the peers that lack it.
func TestHeldAheadSurvivesARestart(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	a := openTest(t, func() Config { cfg := testConfig(t, vfs.NewMem()); cfg.Name = "n1"; return cfg }())
	bcfg := testConfig(t, fs)
	bcfg.Name = "n2"
	b, err := Open(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"k1", "k2", "k3"} {
		if _, err := a.Incr(ctx, "ns", key, 1, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := a.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// b gets a's third change only, in a batch whose range it cannot count.
	var held change.Delta
	if err := a.Replica().ScanSince(a.ID(), 2, func(d change.Delta) bool { held = d; return false }); err != nil || held.Seq != 3 {
		t.Fatalf("a's change 3: %+v, %v", held, err)
	}
	if err := b.Replica().Apply(change.Batch{Deltas: []change.Delta{held}, Ranges: []change.Range{{Origin: a.ID(), After: 1, Upto: 3}}}); err != nil {
		t.Fatal(err)
	}
	want := map[crdt.NodeID][]uint64{a.ID(): {3}}
	if got := b.Replica().HeldAhead(); !maps.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("b holds past its gap %v, want %v", got, want)
	}
	if got := b.Replica().VersionVector()[a.ID()]; got != 0 {
		t.Fatalf("b's vector of a = %d, want 0 (it lacks 1 and 2)", got)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openTest(t, bcfg)
	if got := b.Replica().HeldAhead(); !maps.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("after a restart b holds past its gap %v, want %v", got, want)
	}
	// Once the gap fills, the vector moves over the held change.
	var first change.Batch
	if err := a.Replica().ScanSince(a.ID(), 0, func(d change.Delta) bool { first.Deltas = append(first.Deltas, d); return d.Seq < 2 }); err != nil {
		t.Fatal(err)
	}
	first.Ranges = []change.Range{{Origin: a.ID(), After: 0, Upto: 2}}
	if err := b.Replica().Apply(first); err != nil {
		t.Fatal(err)
	}
	if got := b.Replica().VersionVector()[a.ID()]; got != 3 {
		t.Fatalf("b's vector of a after the gap filled = %d, want 3", got)
	}
	if got := b.Replica().HeldAhead(); len(got) != 0 {
		t.Fatalf("b still lists %v as held past a gap", got)
	}
}
