package crdt_test

import (
	"fmt"

	"github.com/countmesh/countmesh/crdt"
)

// Two replicas count independently, one resets concurrently with the other's
// increments, and after exchanging state both read the same value: the reset
// covers what its node had seen, the unseen increments survive.
func ExampleCounter_SetReset() {
	a, b := crdt.NodeIDFromName("a"), crdt.NodeIDFromName("b")
	var ra, rb crdt.Counter
	ra.Add(a, 10)
	rb.Merge(ra) // b has seen a's 10
	rb.SetReset(b, 0, false)
	ra.Add(a, 5) // concurrent with the reset
	ra.Merge(rb)
	rb.Merge(ra)
	fmt.Println(ra.Value(), rb.Value())
	// Output: 5 5
}

func ExampleCounter_Merge() {
	a, b := crdt.NodeIDFromName("a"), crdt.NodeIDFromName("b")
	var ra, rb crdt.Counter
	ra.Add(a, 3)
	rb.Add(b, 4)
	rb.Add(b, -1)
	ra.Merge(rb)
	ra.Merge(rb) // idempotent
	fmt.Println(ra.Value())
	// Output: 6
}
