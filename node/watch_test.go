package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// waitKeys waits up to d for the subscription to report changes.
func waitKeys(t *testing.T, s *Subscription, d time.Duration) []string {
	t.Helper()
	select {
	case <-s.Ready():
		keys, _ := s.Take()
		return keys
	case <-time.After(d):
		t.Fatalf("no change reported within %s", d)
		return nil
	}
}

// TestWatchSeesReplicatedChanges: a subscriber on node a is told of an
// increment made on node b once it has replicated, and reads its value.
func TestWatchSeesReplicatedChanges(t *testing.T) {
	a := openNamed(t, "a", vfs.NewMem())
	b := openNamed(t, "b", vfs.NewMem())
	toA := newDirect(t, a)
	b.SetPublisher(toA)
	ctx := context.Background()
	defer func() { // every batch applied before the nodes close
		if err := b.Flush(ctx); err != nil {
			t.Error(err)
		}
		b.SetPublisher(nil)
		toA.wait()
	}()
	one, err := a.Subscribe("likes", "post-1", "")
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	all, err := a.Subscribe("likes", "", "post-")
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	other, err := a.Subscribe("likes", "", "user-")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	start := time.Now()
	if _, err := b.Incr(ctx, "likes", "post-1", 3, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	keys := waitKeys(t, one, time.Second)
	t.Logf("a saw b's increment after %s", time.Since(start))
	cs, err := one.Current(ctx, keys)
	if err != nil || len(cs) != 1 || cs[0].Key != "post-1" || cs[0].Value != 3 {
		t.Fatalf("current = %v, %v; want post-1 = 3", cs, err)
	}
	if keys := waitKeys(t, all, time.Second); len(keys) != 1 || keys[0] != "post-1" {
		t.Fatalf("prefix watch got %v", keys)
	}
	select {
	case <-other.Ready():
		t.Fatalf("a watch of another prefix was told: %v", func() []string { k, _ := other.Take(); return k }())
	default:
	}
	// Many changes of one key between two takes are one key.
	for range 20 {
		if _, err := a.Incr(ctx, "likes", "post-1", 1, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if keys := waitKeys(t, one, time.Second); len(keys) != 1 {
		t.Fatalf("coalesced keys = %v", keys)
	}
}

// TestWatchOverflowDropsTheSubscriber: a subscriber that does not take its
// changes is marked overflowed after MaxWatchPending keys, and writes never
// block on it.
func TestWatchOverflowDropsTheSubscriber(t *testing.T) {
	n := openTest(t, testConfig(t, vfs.NewMem()))
	ctx := context.Background()
	s, err := n.Subscribe("pv", "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ops := make([]BatchOp, 0, MaxBatchOps)
	for i := range MaxWatchPending + 10 {
		ops = append(ops, BatchOp{NS: "pv", Key: fmt.Sprintf("k%06d", i), By: 1})
		if len(ops) == cap(ops) {
			if _, err := n.Batch(ctx, ops, "", false); err != nil {
				t.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	if _, err := n.Batch(ctx, ops, "", false); err != nil {
		t.Fatal(err)
	}
	if !s.Overflowed() {
		t.Fatal("a subscriber that took nothing of 10,010 changed keys is not overflowed")
	}
	if keys, overflow := s.Take(); len(keys) != 0 || !overflow {
		t.Fatalf("take after overflow = %d keys, overflow %v", len(keys), overflow)
	}
	s.Close()
	if n.watch.Active() {
		t.Fatal("a subscription is left after close")
	}
}

// TestTTLExpiresIdleCountersMergeSafely: an idle counter reads 0 at once and
// is deleted by the expiry pass; a peer's increment concurrent with the
// expiry survives it, and the old value never comes back.
func TestTTLExpiresIdleCountersMergeSafely(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)}
	a, b := clock.open(t, "a"), clock.open(t, "b")
	ctx := context.Background()
	if _, err := a.PutNamespace(ctx, "rl", NamespacePatch{TTL: ptr("1h")}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"idle", "busy"} {
		if _, err := a.Incr(ctx, "rl", key, 5, WriteOptions{Labels: map[string]string{"route": "/x"}}); err != nil {
			t.Fatal(err)
		}
	}
	antiEntropy(t, a, b)
	clock.Set(clock.Now().Add(30 * time.Minute))
	if _, err := a.Incr(ctx, "rl", "busy", 1, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if v := mustGet(t, a, "rl", "idle"); v != 5 {
		t.Fatalf("idle after 30m = %d, want 5", v)
	}
	clock.Set(clock.Now().Add(31 * time.Minute))
	if v := mustGet(t, a, "rl", "idle"); v != 0 {
		t.Fatalf("idle after 61m reads %d, want 0", v)
	}
	if v := mustGet(t, a, "rl", "busy"); v != 6 {
		t.Fatalf("busy after 61m = %d, want 6 (changed 31m ago)", v)
	}
	// b increments idle before it hears of the expiry.
	if _, err := b.Incr(ctx, "rl", "idle", 2, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := a.DropExpired(ctx); err != nil {
		t.Fatal(err)
	}
	st, _, err := a.rep.CounterState("rl", "idle")
	if err != nil || st.Live() {
		t.Fatalf("idle is still live on a after the expiry pass (err %v)", err)
	}
	page, err := a.List(ctx, "rl", "", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || page.Items[0].Key != "busy" {
		t.Fatalf("listing after expiry = %v, want busy only", page.Items)
	}
	for _, n := range []*Node{a, b} {
		if err := n.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	antiEntropy(t, a, b)
	antiEntropy(t, b, a)
	for _, n := range []*Node{a, b} {
		if v := mustGet(t, n, "rl", "idle"); v != 2 {
			t.Fatalf("%s reads idle = %d after the merge; want 2 (b's concurrent increment on top of the expiry, not the old 5)", n.Name(), v)
		}
	}
}
