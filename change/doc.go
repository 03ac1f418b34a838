// Package change holds the replication delta types: a Delta is one change
// of one origin's slot of one counter, a Range the contiguous run of an
// origin's sequence numbers a batch completes, a ConfigRecord a namespace
// config replicated last-writer-wins, and a Batch the unit that a node
// publishes after each durable commit and that a replica applies.
//
// It sits below both the node and the mesh (package gossip re-exports the
// types under their old names), so that the storage and node layers can
// build and read deltas without importing the replication machinery. It
// depends on crdt alone and does no I/O.
package change
