// Package export owns the export stream (backup and restore,
// docs/operations.md): its records, writing one from the store (Write) and
// reading one into a node (Read), paced against the group commit.
//
// An export is a stream of JSON lines (NDJSON): a header, then every
// namespace's config, then one record per stored counter with its full CRDT
// state, then an end record with the counts, so that a file cut short is
// recognised. A counter record holds what replication would send: the slots
// (node id, P, N), the reset with its epoch and floor (a deleted counter's
// tombstone is such a reset), and the time of the last change. Internal
// counters (time buckets, label series, sketch cells, idempotency records,
// rights of bounded counters) are records too, with their raw key in
// base64, so that windows, series, top-K of approximate namespaces, the ids
// of the idempotency window and the bounds' rights survive a restore.
//
// An import merges each record into this node exactly as a peer's state
// is merged (per-slot maximum, the later reset wins, floors merge), so
// importing a file twice changes nothing and a node that holds newer state
// keeps it. Each record is checked first with the rules of peer input
// (package node/replica's peerinput.go): states bounded and well-formed, id
// records not applied in the future, a reset epoch at most
// replica.MaxEpochAhead past this node's, and a
// namespace config's clock at most Config.MaxClockOffset ahead of this
// node's (a config from last week is fine; one from the future is forged).
// Two rules of peer input are different on purpose:
//   - Origins: a peer may only name nodes this node knows. A backup names
//     the nodes that wrote it, which may be long gone or from another mesh,
//     so the file (sent with an admin token) vouches for them, as a range
//     in anti-entropy vouches for an origin: they become known origins of
//     this node (version-vector entries at sequence 0, which claim nothing
//     held), and quorum states that name them are accepted here.
//   - This node's own slot: a peer may not raise it (only this node writes
//     it), but restoring a node's own backup after it lost its disk must.
//     The import raises it under the counter's lock, so this node's later
//     writes go on top of it, and the change leaves as this node's own.
//
// A bad record stops the import with ErrInvalidArgument naming its line;
// nothing of that record is applied, and every record before it is durable
// when the error returns.
//
// This package holds the format, the writer, the reader, and the checks and
// merges of each record (Merger: Namespace and Counter, which the node
// passes to Read as a Target). It does not import package node: the Merger
// is built in node.Open from the hot set, the namespace table
// (node/nsconfig), the replica (node/replica) and function values.
package export
