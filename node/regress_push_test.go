package node

import (
	"context"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
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
		st, seq, err := a.ownChange("ns", key)
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
	if got, want := b.VersionVector()[a.ID()], a.VersionVector()[a.ID()]; got != want {
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
	before := b.VersionVector()[a.ID()]
	push("k5")
	if got := b.VersionVector()[a.ID()]; got != before {
		t.Fatalf("b's vector moved over a gap: %d, was %d", got, before)
	}
	push("k4")
	if got := b.VersionVector()[a.ID()]; got != before+2 {
		t.Fatalf("b's vector after the missing change: %d, want %d", got, before+2)
	}
	antiEntropy(t, b, c)
	for _, k := range []string{"k4", "k5"} {
		if got := mustGet(t, c, "ns", k); got != 1 {
			t.Fatalf("c reads %s = %d, want 1", k, got)
		}
	}
}
