// Package chaos holds what a Jepsen-style campaign against countmesh
// records and how it is judged: the history (every client operation with
// its invoke and complete times and outcome, every fault the nemesis
// injected and healed, and what each node read once the mesh settled) and
// Check, the checker that reads a whole history afterwards and reports a
// verdict per property (reads, final agreement, ids counted once, bounds,
// linearizability of strong operations, window totals, rate limits).
//
// It is pure: no processes, no network, no clock. The campaign that
// produces histories from real countd processes in network namespaces is
// package chaos/campaign; the checker's unit tests and Example run under
// plain go test.
//
// A history kept on disk is JSON lines: the History header first, then one
// Op or Fault per line (docs/chaos.md).
package chaos
