// Package e2e is countmesh's end-to-end suite: real countd processes in
// containers (the FROM scratch image of the Dockerfile), 3 regions x 2
// nodes as in docker-compose.yml, driven from the host through the
// containers' addresses on the compose networks.
//
// The tests carry the build tag e2e and expect a running compose project;
// `make e2e` builds bin/countd and the image, brings a project with a
// unique name up, runs
//
//	go test -tags e2e -count=1 -timeout 20m -v ./e2e/...
//
// with COUNTMESH_E2E_PROJECT set to that name, and always removes the
// containers, networks and volumes afterwards. Without
// COUNTMESH_E2E_PROJECT the tests skip and say so.
//
// The suite:
//
//   - TestConvergenceUnderLoad: writers on all six nodes at a combined
//     COUNTMESH_E2E_RATE increments/s (default 20,000, sent as /v1/batch
//     requests of COUNTMESH_E2E_BATCH ops, default 100). The load runs
//     without pause through COUNTMESH_E2E_ROUNDS rounds (default 100) of
//     COUNTMESH_E2E_ROUND each (default 1s); each round writes its own
//     counters on every node (plus 1,000 hot counters shared by all rounds),
//     and the time from the round's last acknowledged write to the moment
//     every node reads the round's exact totals is one measurement, taken
//     while the next round's load runs. It asserts that every node reaches
//     exactly the acknowledged totals within 10 s, and reports the rate
//     reached and p50/p99/max of the convergence times (t.Log and
//     results/convergence.json).
//   - TestKillRestart: SIGKILL of one node (COUNTMESH_E2E_KILL_NODE,
//     default eu-2) under load, restart of the same container with the
//     same volume. It asserts that the node becomes ready, that right
//     after it is ready its own slot holds everything it acknowledged, that
//     it catches up with everything acknowledged elsewhere, and that every
//     node converges to acked <= value <= attempted for every counter.
//     Times in results/kill.json.
//   - TestRegionPartition: one region (COUNTMESH_E2E_PARTITION_REGION,
//     default ap) cut off for COUNTMESH_E2E_PARTITION (default 60s) while
//     all nodes keep writing. It asserts that both sides keep accepting
//     writes, that the cut holds (neither side sees the other's writes made
//     after the cut, while the two nodes of the cut region still replicate
//     to each other), and that after reconnection every node converges to
//     acked <= value <= attempted. Times in results/partition.json.
//   - TestRetriesCountOnce (exact_test.go): 10,000 increments with ids
//     (COUNTMESH_E2E_IDS), each sent 2 to 4 times to random nodes of random
//     regions, with COUNTMESH_E2E_IDS_KILL_NODE (default us-1) SIGKILLed
//     and started a quarter of the way in; every node must read exactly the
//     sum of the distinct ids. results/retries.json.
//   - TestBoundedLikes: an exact namespace with min 0, a counter at 100,
//     1,000 decrements of 1 over all six nodes, 400 of them with region ap
//     cut off: exactly 100 succeed, the rest get 409 or 503, no read is ever
//     below 0. results/bounded.json.
//   - TestRateLimitAcrossTheMesh: one key limited to 1,000 per hour,
//     hammered on all six nodes for 5 s: 990 to 1,001 admitted.
//     results/ratelimit.json.
//
// # Network
//
// docker-compose.yml gives every region its own bridge network and
// attaches every node to all three, with a static address on each; a node
// advertises its address on its own region's network. Traffic inside a
// region therefore stays on the region's network, and traffic to a node
// of region R crosses network R. Cutting region R off disconnects R's
// nodes from the other two networks and every other node from R's network
// (docker network disconnect); the two nodes of R still reach each other,
// as a data center that lost its WAN links would. Docker drops traffic
// between different bridge networks, so nothing goes around the cut
// through the host, and the partition test checks that the cut holds
// before it trusts the result. The host reaches every node at its own
// region's address throughout, so the test keeps writing to both sides.
//
// "acked" counts increments answered 200; "attempted" adds those whose
// outcome is unknown (a request that failed after it was sent). Requests
// refused with an error status, or that never connected, change nothing
// and count in neither.
package e2e
