package chaos_test

import (
	"fmt"
	"time"

	"github.com/countmesh/countmesh/chaos"
)

// A quorum read that saw an increment, then a later quorum read that did
// not: each read alone is within what was acked and attempted, but no
// order of the operations explains both.
func ExampleCheck() {
	t0 := time.Unix(1_700_000_000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	h := &chaos.History{
		Seed:  7,
		Nodes: []string{"n1", "n2"},
		Ops: []chaos.Op{
			{Client: 0, Kind: chaos.Incr, Node: "n1", NS: "q", Key: "k", By: 1, Consistency: "quorum", Invoke: ms(0), Complete: ms(100), Outcome: chaos.OK, Value: 1},
			{Client: 1, Kind: chaos.Read, Node: "n2", NS: "q", Key: "k", Consistency: "quorum", Invoke: ms(10), Complete: ms(20), Outcome: chaos.OK, Value: 1},
			{Client: 2, Kind: chaos.Read, Node: "n1", NS: "q", Key: "k", Consistency: "quorum", Invoke: ms(30), Complete: ms(40), Outcome: chaos.OK, Value: 0},
		},
		Faults: []chaos.Fault{{Kind: chaos.PartitionNodes, Groups: [][]string{{"n1"}, {"n2"}}, Start: ms(5), End: ms(50)}},
		Final:  map[string]map[string]int64{"n1": {"q/k": 1}, "n2": {"q/k": 1}},
	}
	r := chaos.Check(h)
	fmt.Println(r.OK())
	fmt.Println(r)
	// Output:
	// false
	// chaos: seed=7 faults: partition-nodes=1 ops: ok=3 fail=0 unknown=0 checks: reads=ok final=ok ids=none bounds=none linearizable=FAIL windows=none ratelimit=none
	//   reads: checked 2: every read within [must be visible, attempted]
	//   final: checked 1: every node agrees, within [acked, acked + unknown]
	//   ids: checked 0: 0 id-only keys counted each id at most once, 0 duplicate answers had an earlier attempt
	//   bounds: checked 0: 0 bounded namespaces, every value within its bounds
	//   linearizable: checked 3: 1 of 1 keys not linearizable; first: q/k: strong increments and reads not linearizable (3 of 3 ops show it); 0 keys skipped (local or id'd increments), 0 with strong operations in several regions (quorum is per region)
	//   windows: checked 0: 0 series totals equal their counters
	//   ratelimit: checked 0: no admitted rate-limit requests
	// FAIL linearizable seed=7: q/k: strong increments and reads not linearizable (3 of 3 ops show it)
	//   fault partition-nodes +0.005000s..+0.050000s groups=[[n1] [n2]]
	//   +0.000000s..+0.100000s client=0 node=n1 incr q/k by=+1 quorum -> ok value=1
	//   +0.010000s..+0.020000s client=1 node=n2 read q/k quorum -> ok value=1
	//   +0.030000s..+0.040000s client=2 node=n1 read q/k quorum -> ok value=0
}
