package query

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
)

// trueTop returns the k largest of vals (ties by key), as the top set ranks.
func trueTop(keys []string, vals []int64, k int, prefix string) []Item {
	var all []Item
	for i, v := range vals {
		if v != 0 && strings.HasPrefix(keys[i], prefix) {
			all = append(all, Item{Key: keys[i], Value: v})
		}
	}
	slices.SortFunc(all, func(a, b Item) int {
		if c := cmp.Compare(b.Value, a.Value); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return all[:min(k, len(all))]
}

// TestLargeTopSetOverAMillionCounters drives the incremental top set with a Zipf
// workload over 1,000,000 counters and checks it against the true ranking,
// then shrinks a leader and checks that the answer says it is not exact.
func TestLargeTopSetOverAMillionCounters(t *testing.T) {
	const nkeys = 1_000_000
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("page/%07d", i)
	}
	vals := make([]int64, nkeys)
	ts := newTopSet(0)
	ts.building = false
	close(ts.built)
	rng := rand.New(rand.NewPCG(7, 11))
	zipf := rand.NewZipf(rng, 1.1, 1, nkeys-1)
	// Zipf ranks are shuffled over the keys, so that the heavy keys are not
	// simply the first ones.
	perm := rng.Perm(nkeys)
	for range 1_200_000 {
		i := perm[zipf.Uint64()]
		before := vals[i]
		vals[i]++
		ts.observe(keys[i], before, vals[i], true)
	}
	for _, k := range []int{1, 10, 100} {
		got, exact := ts.top(k, "")
		if want := trueTop(keys, vals, k, ""); !sameTop(got, want) || !exact {
			t.Fatalf("top %d = %v (exact %v), want %v", k, got, exact, want)
		}
	}
	// Decrement the leader far down: the set no longer knows the true top.
	top1, _ := ts.top(1, "")
	i := sort.SearchStrings(keys, top1[0].Key)
	before := vals[i]
	vals[i] = 1
	ts.observe(keys[i], before, 1, true)
	if _, exact := ts.top(topCap, ""); exact {
		t.Fatal("after a leader shrank below the ceiling, the full set still claims to be exact")
	}
	got, exact := ts.top(10, "")
	if want := trueTop(keys, vals, 10, ""); !sameTop(got, want) || !exact {
		// the next ten are still far above the ceiling
		t.Fatalf("top 10 after the shrink = %v (exact %v), want %v", got, exact, want)
	}
}

func sameTop(got, want []Item) bool { return slices.Equal(got, want) }
