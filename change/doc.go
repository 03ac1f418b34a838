// Package change holds the replication types of countmesh: a Delta is one
// change of one origin's slot of one counter, a Batch is the unit that moves
// between nodes (deltas, the (origin, sequence) ranges they complete, and
// namespace config records).
//
// The package sits below both node and gossip, so that the node builds what
// gossip sends without importing gossip's machinery, and gossip carries it
// without knowing the node. It holds data types only: no I/O, no locks.
package change
