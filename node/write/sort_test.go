package write

import (
	"testing"

	"pgregory.net/rapid"
)

// TestSortByStripe: the order sortByStripe gives holds every op once, by
// ascending stripe, the ops of one stripe in their order, for batches on
// both sides of insertionSortOps and a scratch reused from a larger batch.
func TestSortByStripe(t *testing.T) {
	sc := &scratch{}
	rapid.Check(t, func(t *rapid.T) {
		stripes := 1 << rapid.IntRange(0, 8).Draw(t, "log2 stripes")
		n := rapid.OneOf(rapid.IntRange(0, insertionSortOps+1), rapid.IntRange(0, 300)).Draw(t, "ops")
		stripeOf := make([]int32, n)
		for i := range stripeOf {
			stripeOf[i] = int32(rapid.IntRange(0, stripes-1).Draw(t, "stripe"))
		}
		order := sortByStripe(stripeOf, stripes, sc)
		if len(order) != n {
			t.Fatalf("%d indexes for %d ops", len(order), n)
		}
		seen := make([]bool, n)
		for k, i := range order {
			if i < 0 || int(i) >= n || seen[i] {
				t.Fatalf("order %v is not a permutation of 0..%d", order, n-1)
			}
			seen[i] = true
			if k > 0 {
				p := order[k-1]
				if stripeOf[p] > stripeOf[i] || (stripeOf[p] == stripeOf[i] && p > i) {
					t.Fatalf("order %v of stripes %v: op %d (stripe %d) before op %d (stripe %d)", order, stripeOf, p, stripeOf[p], i, stripeOf[i])
				}
			}
		}
	})
}
