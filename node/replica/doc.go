// Package replica is the replica side of a countmesh node: what gossip
// streams to (gossip.Replica: Apply, VersionVector, HeldAhead, ScanSince,
// Configs) and what the group committer drains (store.Source: Fill,
// Committed).
//
// A Replica owns the version vector (origin -> highest sequence such that
// every change up to it is durably held here) and the single changes held
// past a gap in it, this node's own sequence numbers, the publisher its
// durable changes go to, the checkpointer of the hot set, the recovery of
// the operation log at start, and the checks of everything a peer sends
// (peerinput.go), which the rights and quorum code of node/exact and the
// import of an export file call directly (CheckState, CheckPeerState,
// CheckAgainstLocalLocked, Known).
//
// # Guarantees
//
//   - Only what is durable leaves the node: Fill numbers the node's own
//     changes and Committed publishes them after their commit's fsync.
//   - A batch from a peer is checked whole before anything of it is merged;
//     one bad part refuses it with an error wrapping ErrInvalidPeerData.
//   - The merged counters are marked dirty before the version vector moves
//     over them, so every commit that records the moved vector holds them.
//
// The node builds it in node.Open from the hot set, the store and function
// values (its namespaces, its change feed, its id records); the replica
// imports neither node nor its namespaces. A Replica is safe for concurrent
// use; Fill and Committed run on the committer goroutine only.
package replica
