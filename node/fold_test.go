package node

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"pgregory.net/rapid"
)

// TestBatchFoldMatchesOpsOneByOne: a batch that names counters many times is
// applied with each counter's ops of one sign summed (write.fold); asking for
// the value after each op turns that off. The same batches on two nodes, one
// of each kind, must leave every counter with the same slots and value, and
// answer and count the same. The batches mix two namespaces (one with a
// window), keys repeated in both, signs and zeros, and sometimes one op that
// folding must refuse (an id, a namespace with bounds, a magnitude near the
// int64 range, which also leaves a counter there for the next batches).
func TestBatchFoldMatchesOpsOneByOne(t *testing.T) {
	ctx := context.Background()
	setup := func(rt *rapid.T) *Node {
		n := openTest(t, testConfig(t, vfs.NewMem()))
		if _, err := n.PutNamespace(ctx, "win", NamespacePatch{Windows: &[]string{"1m"}}); err != nil {
			rt.Fatal(err)
		}
		if _, err := n.PutNamespace(ctx, "lim", NamespacePatch{Min: NullableInt{Set: true, Value: ptr(int64(-1000))}}); err != nil {
			rt.Fatal(err)
		}
		return n
	}
	rapid.Check(t, func(t *rapid.T) {
		folded, plain := setup(t), setup(t)
		defer folded.Close()
		defer plain.Close()
		keys := rapid.IntRange(1, 6).Draw(t, "keys")
		type counter struct{ ns, key string }
		seen := map[counter]bool{}
		for b := range rapid.IntRange(1, 3).Draw(t, "batches") {
			var ops []BatchOp
			size := rapid.IntRange(1, 80).Draw(t, "ops")
			odd := rapid.IntRange(0, 7).Draw(t, "odd") // 1-3: one op folding must refuse
			oddAt := rapid.IntRange(0, size-1).Draw(t, "oddAt")
			for i := range size {
				op := BatchOp{
					NS:  rapid.SampledFrom([]string{"plain", "plain", "win"}).Draw(t, "ns"),
					Key: fmt.Sprintf("k%d", rapid.IntRange(0, keys-1).Draw(t, "key")),
					By:  rapid.Int64Range(-3, 5).Draw(t, "by"),
				}
				switch {
				case i != oddAt:
				case odd == 1:
					op.ID = fmt.Sprintf("id-%d-%d", b, i)
				case odd == 2:
					op.NS = "lim"
				case odd == 3:
					op.By = math.MaxInt64 / 2 // near the range: unfolded
				}
				ops = append(ops, op)
				seen[counter{op.NS, op.Key}] = true
			}
			inc0 := testutil.ToFloat64(folded.metrics.Increments)
			fres, ferr := folded.Batch(ctx, ops, "", false)
			pres, perr := plain.Batch(ctx, ops, "", true)
			if fmt.Sprint(ferr) != fmt.Sprint(perr) {
				t.Fatalf("batch %d: errors differ: folded %v, one by one %v", b, ferr, perr)
			}
			if fres.Applied != pres.Applied || fres.Duplicates != pres.Duplicates {
				t.Fatalf("batch %d: folded %d applied %d duplicates, one by one %d and %d", b, fres.Applied, fres.Duplicates, pres.Applied, pres.Duplicates)
			}
			if got := testutil.ToFloat64(folded.metrics.Increments) - inc0; ferr == nil && got != float64(len(ops)) {
				t.Fatalf("batch %d: increments metric grew by %v, want %d", b, got, len(ops))
			}
		}
		for k := range seen {
			fs, err1 := folded.PeerState(ctx, k.ns, k.key)
			ps, err2 := plain.PeerState(ctx, k.ns, k.key)
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: %v %v", k, err1, err2)
			}
			if fmt.Sprint(fs.Slots) != fmt.Sprint(ps.Slots) || fs.Value() != ps.Value() {
				t.Fatalf("%s: folded %+v (value %d), one by one %+v (value %d)", k, fs, fs.Value(), ps, ps.Value())
			}
		}
	})
}
