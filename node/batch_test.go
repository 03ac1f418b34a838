package node

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestBatchMixedNamespaces: a batch whose ops alternate between a bounded
// exact namespace and a plain one checks each op against its own
// namespace (the write path looks a namespace up once per run of ops of it),
// and the pooled working space of one batch leaks nothing into the next,
// whatever their sizes, ids and outcomes.
func TestBatchMixedNamespaces(t *testing.T) {
	n := openTest(t, testConfig(t, vfs.NewMem()))
	ctx := context.Background()
	if _, err := n.PutNamespace(ctx, "lim", NamespacePatch{Type: ptr(TypeExact), Min: NullableInt{Set: true, Value: ptr(int64(0))}, Max: NullableInt{Set: true, Value: ptr(int64(3))}}); err != nil {
		t.Fatal(err)
	}
	// lim/a would reach 4: the whole batch is refused.
	_, err := n.Batch(ctx, []BatchOp{{NS: "plain", Key: "a", By: 5}, {NS: "lim", Key: "a", By: 2}, {NS: "plain", Key: "b", By: 1}, {NS: "lim", Key: "a", By: 2}}, "", true)
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("a batch past lim's max: %v", err)
	}
	// plain/a may go past 3, and lim/a stays within it.
	res, err := n.Batch(ctx, []BatchOp{{NS: "plain", Key: "a", By: 5}, {NS: "lim", Key: "a", By: 2}, {NS: "plain", Key: "a", By: 4}, {NS: "lim", Key: "a", By: 1}}, "", true)
	if err != nil || fmt.Sprint(res.Values) != "[5 2 9 3]" {
		t.Fatalf("batch: %+v %v", res, err)
	}
	// A decrement below lim's min, after ops of the plain namespace.
	if _, err := n.Batch(ctx, []BatchOp{{NS: "plain", Key: "a", By: -100}, {NS: "lim", Key: "b", By: -1}}, "", true); !errors.Is(err, ErrConflict) {
		t.Fatalf("a batch below lim's min: %v", err)
	}
	if got := mustGet(t, n, "plain", "a"); got != 9 {
		t.Fatalf("plain/a = %d, want 9", got)
	}
	// Batches of other sizes, with and without ids, after the refusals.
	for round := range 3 {
		ops := make([]BatchOp, 0, 40)
		for i := range 10 + 10*round {
			op := BatchOp{NS: "plain", Key: fmt.Sprintf("k%d", i%7), By: 1}
			if i%3 == 0 {
				op.ID = fmt.Sprintf("r%d-%d", round, i)
			}
			ops = append(ops, op)
		}
		res, err := n.Batch(ctx, ops, "", true)
		if err != nil || res.Applied != len(ops) || res.Duplicates != 0 {
			t.Fatalf("round %d: %+v %v", round, res, err)
		}
		// Replayed, the ops with ids are duplicates and the others count.
		res, err = n.Batch(ctx, ops, "", true)
		wantDup := (len(ops) + 2) / 3
		if err != nil || res.Duplicates != wantDup || res.Applied != len(ops)-wantDup {
			t.Fatalf("round %d replayed: applied %d, duplicates %d (want %d), %v", round, res.Applied, res.Duplicates, wantDup, err)
		}
	}
	total := int64(0)
	for k := range 7 {
		total += mustGet(t, n, "plain", fmt.Sprintf("k%d", k))
	}
	if want := int64(2*(10+20+30) - (4 + 7 + 10)); total != want {
		t.Fatalf("plain/k* sum to %d, want %d", total, want)
	}
}
