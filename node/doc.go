// Package node is one countmesh peer: the facade that the HTTP and RESP
// layers call, with the replica side (Node.Replica, package node/replica)
// that gossip streams to.
//
// A Node is the facade: Config and Open, the public methods that the HTTP
// and RESP layers call (validation, then one call into a subsystem), reads
// and listings over the hot set (package node/keyspace, which reads through
// from and is checkpointed to package store), and the change feed that
// tells top-K and the watchers about every change. Incr is a batch of one,
// so an increment and a batch both go through the same write path.
//
// Everything else lives in subpackages, each with its own state type that
// Open builds from small concrete dependencies and function values:
// node/replica (what gossip streams to and the committer drains: Apply,
// the version vector, ScanSince, Fill and Committed, recovery, and the
// checks of peer input; Node.Replica returns it), node/nsconfig (the
// namespaces, their configs and counter types; node re-exports the public
// types), node/write (the write path: ids, overflow and bounds under the
// stripe locks, derived counters, durability, replication), node/series
// (time buckets, label series, point-in-time reads, retention and ttl
// expiry), node/query (top-K and aggregates), node/approx (approximate
// namespaces' sketches and what they refuse), node/exact (the quorum
// levels and the rights that keep bounds), node/idem (increment ids),
// node/export (the export stream and the import's merges), node/watch
// (subscriptions) and node/metrics. None of them imports node, and Node
// embeds none of them.
//
// # Guarantees
//
//   - A write that returns without error is as durable as its namespace
//     asks: with sync durability its operation-log record is fsynced; with
//     async it is within Config.CommitMaxDelay.
//   - A write is all or nothing: bad input, an overflow, a crossed bound or
//     an overloaded node refuses the whole batch, and nothing is applied.
//   - Only what is durable leaves the node: deltas are published to peers
//     after their commit.
//   - A node started with Config.StartUnready serves no writes and no
//     quorum reads until MarkReady (after it caught up with its peers); one
//     opened without it is ready when Open returns. Ready turns false for
//     good when the disk fails.
//   - Reads and listings see every change the node applied, without waiting
//     for a checkpoint.
//
// Errors wrap one of the package's sentinels (ErrInvalidArgument,
// ErrConflict, ErrUnavailable, ...); package httpapi maps them to status
// codes in one place. A Node is safe for concurrent use; Close is
// idempotent.
//
// docs/design.md walks one increment from HTTP to a peer's disk.
package node
