// Package node is one countmesh peer: the facade that the HTTP and RESP
// layers call, and the replica that gossip streams to.
//
// A Node owns the namespaces and their configs, and the one write path:
// Incr is a batch of one, so an increment and a batch both go through the
// same function (apply), which applies ids at most once, keeps the bounds of
// exact namespaces (with rights collected from peers), counts the derived
// counters (label series and window buckets), waits for the durability the
// namespace asks for, and replicates to the nodes its consistency level asks
// for. The counters themselves live in the hot set (package node/keyspace),
// which reads through from and is checkpointed to package store.
//
// The rest lives in subpackages, each with its own state type that Open
// builds and wires to the hot set with function values: node/series (time
// buckets, label series, point-in-time reads, retention and ttl expiry),
// node/query (top-K and aggregates), node/approx (approximate namespaces'
// sketches), node/exact (the quorum levels and the rights that keep
// bounds), node/idem (increment ids), node/export (the export stream) and
// node/watch (subscriptions). None of them imports node; Node keeps a field
// for each and the public methods that the HTTP and RESP layers call.
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
