//go:build sabotage_bounds_no_rights

package node

import (
	"context"
	"testing"
)

// Under sabotage_bounds_no_rights two nodes of an exact namespace with min
// 0 both decrement a counter at 1, though only one holds the right to: the
// merged value is -1. (Reads clamp it to 0; the two acknowledged
// decrements of a counter at 1 are what a checker sees.)
func TestSabotageBoundsNoRightsCrossesMin(t *testing.T) {
	names := []string{"a", "x"}
	m := openRightsMesh(t, names, []string{"r1", "r1"})
	ctx := context.Background()
	a, x := m.get("a"), m.get("x")
	putExactMin0(t, a, "likes")
	if _, err := a.Incr(ctx, "likes", "post", 1, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	exchange := func() {
		for _, n := range []*Node{a, x} {
			if err := n.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		antiEntropy(t, a, x)
		antiEntropy(t, x, a)
	}
	exchange()
	if st, _, _ := x.rep.CounterState("likes", "post"); st.Value() != 1 {
		t.Fatalf("x sees %d before the decrements, want 1", st.Value())
	}
	// x holds no rights; a holds the one there is. Both decrement.
	for _, n := range []*Node{x, a} {
		if _, err := n.Incr(ctx, "likes", "post", -1, WriteOptions{}); err != nil {
			t.Fatalf("%s's decrement: %v, want it let through", n.Name(), err)
		}
	}
	exchange()
	for _, n := range []*Node{a, x} {
		st, _, err := n.rep.CounterState("likes", "post")
		if err != nil {
			t.Fatal(err)
		}
		if st.Value() != -1 {
			t.Errorf("%s: merged value %d, want -1 (below min 0)", n.Name(), st.Value())
		}
	}
}
